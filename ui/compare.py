"""Compare mode on a page: a "Compare with" select (nothing by default; the loaded agents that read the page's dataset
and that the page analyses, less the current one, and the randomized copy of the current agent), kept in the session
and the URL (`?compare=NAME`, `?compare=randomized`). A page needs one line:

    sel = compare.select(start(...))

after which every `ui.page.figure(sel, ...)` draws the comparison (analysis/publish/compare_mode.py) and `**sel.paths` hands the
second agent to the page's bundle. The second agent is the session's variant as Home's choices make it
(ui.agents.agent_in_session with the same dataset), or analysis.publish.compare_mode.randomized_agent of the first agent as the
page uses it. A choice that does not fit (another observation size, a kind the page does not analyse, an agent no
longer loaded) is one warning sentence, and the select goes back to nothing; the first agent's figures stay.
"""
from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import streamlit as st

from analysis.publish.compare_mode import RANDOMIZED, CompareError, check_pair, randomized_agent
from models.errors import AgentError
from models.loading import capabilities_of, kinds_with
from ui.agents import agent_in_session, agent_names, agent_path, get_agent, shipped_paths
from ui.nav import write
from ui.page import Selection
from ui.text import md_escape

KEY = "compare"              # session state and URL: the chosen value (an agent name or "randomized"), None for none
WIDGET = "compare_select"
NONE = ""
KIND_NAMES = {"dt": "Decision Transformer", "tt": "Trajectory Transformer", "mlp": "MLP policy", "gru": "GRU policy",
              "dynamics": "dynamics model"}


def _facts(name: str):
    """What check_dataset reads of an agent, without loading a shipped one (its config.json); None if unreadable."""
    path = shipped_paths().get(name)
    if path is not None:
        try:
            c = json.loads((path / "config.json").read_text())
            config = SimpleNamespace(n_actions=c.get("n_actions"), env_id=c.get("env_id"))
            caps = capabilities_of(c["kind"])
            return SimpleNamespace(kind=c["kind"], has=caps.__contains__, obs_dim=int(c["obs_dim"]), act_dim=int(c["act_dim"]),
                                   discrete=bool(c["discrete"]), config=config)
        except (OSError, ValueError, KeyError, TypeError):
            return None
    try:
        agent = get_agent(name)
    except (KeyError, AgentError):
        return None
    return None if isinstance(agent, str) else agent


def _fits(sel: Selection, name: str) -> str | None:
    """None when `name` can be compared with the page's agent on its dataset, else the reason."""
    from models.checks import check_dataset

    facts = _facts(name)
    if facts is None:
        return "it is not loaded in this session"
    if sel.needs and not all(facts.has(c) for c in sel.needs):
        return (f"it is a {KIND_NAMES.get(facts.kind, facts.kind)} and this page analyses "
                f"{' or '.join(KIND_NAMES.get(k, k) + 's' for k in kinds_with(sel.needs))}")
    try:
        check_dataset(facts, sel.dataset)
    except AgentError as e:
        return str(e).rstrip(".")
    return None


def what_fits(sel: Selection, offered: list[str]) -> str:
    """The sentence that says what can be compared here."""
    ds = sel.dataset
    acts = f"{ds.n_actions} discrete actions" if ds.discrete else f"{ds.act_dim}-d continuous actions"
    kinds = f" ({' or '.join(KIND_NAMES.get(k, k) + 's' for k in kinds_with(sel.needs))})" if sel.needs else ""
    return (f"Compare with an agent{kinds} that reads {ds.obs_dim} observation features and {acts}; loaded here: "
            f"{', '.join(label(sel, v) for v in offered)}.")


def options(sel: Selection) -> list[str]:
    """The values the select offers besides nothing: the randomized copy, then every loaded agent that fits."""
    return [RANDOMIZED] + [n for n in agent_names() if n != sel.agent_name and _fits(sel, n) is None]


def label(sel: Selection, value: str | None) -> str:
    if not value:
        return "nothing (this agent alone)"
    return f"randomized copy of {sel.agent_name}" if value == RANDOMIZED else value


def _reset() -> None:
    st.session_state[KEY] = None
    st.session_state[WIDGET] = NONE
    write()


AXES = {"auto": "auto", "shared": "shared", "independent": "each its own"}
AXES_SAID = {"auto": "on one scale where both agents' values fill it (else each on its own: read the ticks)",
             "shared": "on one scale", "independent": "each on its own scale (read the ticks)"}


def _changed() -> None:
    st.session_state[KEY] = st.session_state.get(WIDGET) or None


def select(sel: Selection) -> Selection:
    """The page's "Compare with" select; returns the selection with the second agent (sel.other) when one is
    chosen and fits, else `sel` as it was."""
    offered = options(sel)
    wanted = st.session_state[KEY] if KEY in st.session_state else st.query_params.get(KEY)
    if wanted == sel.agent_name:
        wanted = None
    if wanted and wanted not in offered:
        st.warning(f"Cannot compare {md_escape(sel.agent_name)} with {md_escape(wanted)}: "   # wanted: from the URL
                   f"{md_escape(_fits(sel, wanted) or 'it is not offered here')}. {md_escape(what_fits(sel, offered))}")
        _reset()
        wanted = None
    st.session_state[WIDGET] = wanted or NONE
    chosen = st.selectbox("Compare with", [NONE] + offered, key=WIDGET, on_change=_changed,
                          format_func=lambda v: label(sel, v),
                          help="A second agent on the same dataset, episode and step: each figure beside it (one "
                               "scale where both agents' values fill it, else each its own), with the difference "
                               "(B − A) where it means something. The randomized copy has the same architecture with "
                               "re-initialised weights (a sanity baseline).")
    st.session_state[KEY] = chosen or None
    write()   # the URL carries the choice (ui/nav.py)
    if not chosen:
        return sel
    try:
        other = _second(sel, chosen)
    except CompareError as e:   # check_pair's sentence says what fits
        st.warning(md_escape(e))
        _reset()
        return sel
    except AgentError as e:
        st.warning(f"Cannot compare {md_escape(sel.agent_name)} with {md_escape(label(sel, chosen))}: {md_escape(e)} "
                   f"{md_escape(what_fits(sel, offered))}")
        _reset()
        return sel
    axes = st.radio("Axes", AXES, horizontal=True, key="compare_axes", format_func=AXES.get,
                    help="Auto shares an axis or colour scale where both agents' values fill at least a quarter of it, "
                         "else gives each panel its own (analysis/publish/compare_mode.py).")
    st.caption(f"Comparing with **{md_escape(other.agent_name)}** ({md_escape(other.agent.kind)}, "
               f"K={md_escape(other.agent.context_length)}): each figure shows {md_escape(sel.agent_name)} (A) beside it "
               f"(B), {md_escape(AXES_SAID[axes])}, with B − A where a difference means something.")
    return replace(sel, other=other, key="", axes=axes)


def columns(sel: Selection, spec=2) -> list:
    """Figures a page sets side by side (`spec`: a count or st.columns' widths): in compare mode each is already two
    or three panels wide, so each gets the page's full width instead."""
    n = spec if isinstance(spec, int) else len(spec)
    return st.columns(spec) if sel.other is None else [st.container() for _ in range(n)]


def _second(sel: Selection, value: str) -> Selection:
    if value == RANDOMIZED:
        agent, name, remake = randomized_agent(sel.agent), label(sel, value), RANDOMIZED
    else:
        agent = agent_in_session(value, get_agent(value), sel.dataset_name)
        name, remake = value, agent_path(value)
    check_pair(sel.agent, agent, sel.dataset, sel.agent_name, name)
    return Selection(name, agent, sel.dataset_name, sel.dataset, needs=sel.needs, remake=remake)
