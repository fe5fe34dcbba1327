"""What every analysis page starts with: its title and intro, and the agent + dataset chosen on the home page
(checked to fit each other; a mismatch is one sentence, and the page stops)."""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import streamlit as st

from analysis.publish import catalog
from analysis.core.cache import SHARED, BusyError, cached, context
from analysis.core.identity import agent_key, dataset_key
from models.env_choice import normalization_label
from models.errors import AgentError
from models.loading import family_name, kinds_with
from ui.agents import agent_in_session, agent_path, current_agent_name, get_agent
from ui.data import all_datasets, current_dataset_name, dataset_path
from ui.nav import adopt
from ui.session import forget_ended
from ui.session import owner as _owner
from ui.text import md_escape


@dataclass
class Selection:
    agent_name: str
    agent: object
    dataset_name: str
    dataset: object
    key: str = ""   # cache key of the pair: content keys (never id(): freed ids are reused) and the names shown
    needs: tuple | None = None          # the capabilities the page's agents must have (start's `needs`)
    other: "Selection | None" = None    # compare mode: the second agent on the same dataset (ui/compare.py)
    remake: str | None = None           # for a second agent: what `cli.py export --compare` names it (path, "randomized")
    axes: str = "auto"                  # compare mode: how B's axes relate to A's (compare_mode.compare's `axes`)

    def __post_init__(self):
        self.key = self.key or "|".join([self.agent_name, agent_key(self.agent), self.dataset_name,
                                         dataset_key(self.dataset), self.dataset.source]
                                        + ([self.other.key] if self.other is not None else []))

    @property
    def private(self) -> bool:
        """Does the selection include this session's upload (its figures leave the cache with the session)?"""
        return any(n.startswith("upload: ") or " of upload: " in n for n in (self.agent_name, self.dataset_name)) \
            or (self.other is not None and self.other.private)

    @property
    def paths(self) -> dict:
        """The bundle's sources (ui.exports.bundle_button): agent, dataset and, in compare mode, the second agent."""
        out = {"agent_path": agent_path(self.agent_name), "data_path": dataset_path(self.dataset_name)}
        if self.other is not None:
            out["compare"] = {"agent": self.other.agent, "name": self.other.agent_name, "path": self.other.remake}
        return out


def start(title: str, intro: str, needs: tuple[str, ...] | None = None) -> Selection:
    """The page's title and intro, and the chosen agent + dataset; `needs`: the capabilities (models.base.CAPABILITIES)
    the agent must have for this page, or the page says which agents have them and stops."""
    st.set_page_config(page_title=f"seqlens · {title}", layout="wide")
    st.title(md_escape(title))
    st.markdown(intro)
    adopt()   # app.py did it already; a page run on its own (AppTest of one file) needs it
    agent_name, dataset_name = current_agent_name(), current_dataset_name()
    if agent_name is None or dataset_name is None:
        st.warning("No agent or dataset loaded: run `make sample-agents` / `make sample-data`, or upload on the home page.")
        st.stop()
    agent, ds = agent_in_session(agent_name, get_agent(agent_name), dataset_name), all_datasets()[dataset_name]
    st.caption(f"Agent **{md_escape(agent_name)}** ({md_escape(agent.kind)}, K={md_escape(agent.context_length)}) on "
               f"dataset **{md_escape(dataset_name)}** ({ds.n_episodes:,} episodes); {md_escape(normalization_label(agent))}. "
               "Change them on the home page.")
    if needs and not all(agent.has(c) for c in needs):
        st.info(f"This page needs {md_escape(' or '.join(family_name(k) for k in kinds_with(needs)))}; "
                f"**{md_escape(agent_name)}** is "
                f"{md_escape(family_name(agent.kind))}. "
                "Pick another agent on the home page (e.g. cartpole-dt).")
        st.stop()
    from models.checks import check_dataset

    try:
        check_dataset(agent, ds)
    except AgentError as e:
        st.error(f"{md_escape(e)} Pick a matching agent or dataset on the home page.")
        st.stop()
    return Selection(agent_name, agent, dataset_name, ds, needs=needs)


def _busy(fn):
    """The server's cap on analyses computed at once (analysis/core/cache.py) was hit: its sentence, and the page stops."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BusyError as e:
            st.error(md_escape(e))
            st.stop()
    return wrapped


@_busy
def figure(sel: Selection, name: str, progress=None, **params) -> catalog.Figured:
    """A catalog figure for the selection from the one cache (analysis/core/cache.py): keyed on the content of
    agent and dataset, the names shown and the parameters; the same code as `cli.py export`. progress(f, msg)
    sees the work the figure causes (nothing when it is cached). In compare mode (sel.other, ui/compare.py) the
    figure is analysis.publish.compare_mode's pairing of both agents' figures, each of those cached as it is alone, so the
    comparison costs the second agent's figure and no more; a figure the second agent cannot draw is a warning
    and the first agent's figure alone."""
    from analysis.publish.compare_mode import CompareError, compare, supports

    owner = _owner() if sel.private else SHARED
    made = None
    if sel.other is not None and supports(name):
        other = sel.other
        by_agent = {id(sel.agent): (replace(sel, other=None, key=""), 0.0), id(other.agent): (other, 0.5)}

        def one(n, agent, dataset, **p):   # each agent's own cached figure, its progress on half the bar
            s, start = by_agent[id(agent)]
            part = (lambda f, m="": progress(start + f / 2, m)) if progress is not None else None
            return _single(s, n, part, _owner() if s.private else SHARED, **p)

        with context(progress, owner):
            try:
                made = cached(f"compare:{name}", lambda: compare(name, sel.agent, other.agent, sel.dataset, sel.agent_name,
                                                                 other.agent_name, make=one, axes=sel.axes, **params),
                              sel.agent, sel.dataset, names=[sel.agent_name, sel.dataset_name, other.agent_name],
                              other=agent_key(other.agent), axes=sel.axes, **params)
            except CompareError as e:
                st.warning(f"{md_escape(e)} Showing {md_escape(sel.agent_name)} alone.")
    if made is None:
        made = _single(sel, name, progress, owner, **params)
    forget_ended()
    return made


def _single(sel: Selection, name: str, progress, owner, **params) -> catalog.Figured:
    with context(progress, owner):
        return cached(f"figure:{name}", lambda: catalog.make(name, sel.agent, sel.dataset, **params), sel.agent,
                      sel.dataset, names=[sel.agent_name, sel.dataset_name], **params)


@_busy
def computed(sel: Selection, compute, progress=None):
    """An analysis result that is not a catalog figure (the episode player's data), computed by `compute()` (which
    goes through analysis.core.cache.cached itself) with the page's progress callback and the selection's cache owner: a
    session's upload owns what it made, which leaves the cache with the session."""
    with context(progress, _owner() if sel.private else SHARED):
        out = compute()
    forget_ended()
    return out
