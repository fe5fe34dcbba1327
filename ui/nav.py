"""The page list for st.navigation (app.py), and the URL that carries the selection to every page.

URL paths are the names the pages had as files in pages/, so links and bookmarks
(`/Attention?agent=cartpole-dt&dataset=cartpole`) keep working. The files live in views/: with a pages/ folder, a
direct link showed that folder's files in the sidebar (Streamlit's own page discovery) instead of this list.

The URL is the state. The selection (SELECTION: agent, dataset, environment, normalisation, compare) lives in
session_state keys that no widget owns (Streamlit deletes a widget's key on a run that does not draw it), and every
run writes all of it into the query string, so a reload or a shared link reproduces it. What the URL names wins
when this session did not write it itself (a direct link, a reload, back / forward, an edited address): `adopt`.
Streamlit's own sidebar links drop the query string on a page switch (its frontend keeps only ?embed=), and writing
the selection back afterwards pushed a second history entry without it, which a reload then back opened as a fresh
session on the default agent. So app.py hides Streamlit's list (position="hidden") and `links` draws the same list
with st.page_link, each link carrying the selection (and the target page's own parameters, PAGE_PARAMS).
"""
from __future__ import annotations

import copy
import json

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from ui.text import md_escape

PAGES = [
    ("home.py", "Home", ":material/home:", None),
    ("views/1_Dataset.py", "Dataset", ":material/table_rows:", "Dataset"),
    ("views/2_Attention.py", "Attention", ":material/visibility:", "Attention"),
    ("views/3_Return_conditioning.py", "Return conditioning", ":material/tune:", "Return_conditioning"),
    ("views/4_Credit_assignment.py", "Credit assignment", ":material/account_tree:", "Credit_assignment"),
    ("views/5_Predicted_vs_real.py", "Predicted vs real", ":material/compare_arrows:", "Predicted_vs_real"),
    ("views/6_Embeddings.py", "Embeddings", ":material/scatter_plot:", "Embeddings"),
    ("views/7_Context_and_memory.py", "Context & memory", ":material/memory:", "Context_and_memory"),
    ("views/8_Circuits.py", "Circuits", ":material/cable:", "Circuits"),
    ("views/9_Episode_player.py", "Episode player", ":material/play_circle:", "Episode_player"),
    ("views/10_Live_play.py", "Live play", ":material/sports_esports:", "Live_play"),
    ("views/11_Values.py", "Values", ":material/trending_up:", "Values"),
]
SELECTION = ("agent", "dataset", "env", "norm", "compare")   # session_state keys and URL parameters, in URL order
PAGE_PARAMS = {"Episode_player": ("episode",)}   # a page's own parameters: in its URL and in the links to it
_WRITTEN = "_url_written"   # the query this session last wrote (what the URL says that the session did not)
_PARAMS = "_url_page_params"


def pages() -> list:
    return [st.Page(path, title=title, icon=icon, url_path=url, default=url is None) for path, title, icon, url in PAGES]


def selection() -> dict[str, str]:
    """The selection as URL parameters, in SELECTION's order: the agent and dataset pages use (the defaults when none
    was chosen), then the choices made (unset ones left out)."""
    from ui.agents import current_agent_name
    from ui.data import current_dataset_name

    chosen = {"agent": current_agent_name(), "dataset": current_dataset_name()}
    chosen.update({k: st.session_state.get(k) for k in SELECTION[2:]})
    return {k: str(v) for k, v in chosen.items() if v not in (None, "")}


def _written() -> dict[str, str]:
    return st.session_state.get(_WRITTEN) or {}


def adopt() -> None:
    """Take the selection from the URL when the URL names one this session did not write (a direct link, a reload,
    back / forward, an edited address): all of it, a choice left out meaning none (the agent and dataset: as they
were). A name that is not
    loaded here is one warning sentence and the default. Idempotent: app.py and ui.page.start both call it."""
    url = {k: st.query_params[k] for k in SELECTION if k in st.query_params}
    if not url or url == {k: v for k, v in _written().items() if k in SELECTION}:
        return
    for k in SELECTION:   # every URL this app writes names the agent and dataset; a hand-made one may leave them out
        if k in url or k not in ("agent", "dataset"):
            st.session_state[k] = url.get(k)
    _check_names(url)
    write()


def _check_names(url: dict) -> None:
    from ui.agents import RAW, STORED, agent_names, current_agent_name
    from ui.data import all_datasets, current_dataset_name

    datasets = all_datasets()
    for key, known, what in (("agent", agent_names(), "agent"), ("dataset", datasets, "dataset")):
        if key in url and url[key] not in known:
            st.session_state[key] = None
            fallback = st.session_state[key] = current_agent_name() if key == "agent" else current_dataset_name()
            st.warning(f"The link names the {md_escape(what)} “{md_escape(url[key])}”, which is not loaded here (uploads and files "
                       f"opened on the home page stay in the session that opened them); showing "
                       f"{md_escape(fallback or 'nothing')} instead.")
    if (problem := _env_problem(url.get("env"))) is not None:
        st.session_state["env"] = None
        st.warning(f"The link's environment “{md_escape(url['env'])}” {md_escape(problem)}; no environment is chosen (the agent's own, "
                   "where it names one), and the rest of the link is kept.")
    if url.get("norm") not in (None, STORED, RAW, *datasets):
        st.session_state["norm"] = None
        st.warning(f"The link's state normalisation “{md_escape(url['norm'])}” names no loaded dataset; the agent's "
                   "default is used instead.")


def _env_problem(env: str | None) -> str | None:
    """Why the link's ?env= cannot be used (unknown here, or its spaces do not fit the agent shown), as the end of a
    sentence that says what was expected (the environments that fit the agent), plain text; None when it can."""
    from models.env_choice import candidates, fitting_envs
    from ui.agents import NO_ENV, current_agent_name, get_agent

    if env in (None, "", NO_ENV):
        return None
    name = current_agent_name()
    fits = fitting_envs(get_agent(name)) if name is not None else candidates()
    if env in fits:
        return None
    why = "is not an environment seqlens can make here" if env not in candidates() else \
        f"does not fit the observation and action spaces of {name}"
    expected = f"one of {', '.join(fits)}" if fits else "none: no environment here fits the agent"
    return f"{why} (expected {expected}{' for ' + name if name and env not in candidates() else ''})"


def write() -> None:
    """Put the whole selection into the URL (one change, so one history entry), the page's own parameters after it."""
    chosen = selection()
    want = {**chosen, **{k: v for k, v in st.query_params.to_dict().items() if k not in SELECTION}}
    if st.query_params.to_dict() != want:   # the same parameters in another order: no new history entry
        st.query_params.from_dict(want)
    # page parameters count as written only when set_page_param wrote them (a link's ?episode= is the URL's)
    st.session_state[_WRITTEN] = {**chosen, **{k: v for k, v in _written().items() if k not in SELECTION}}


def page_param(key: str, current=None) -> str | None:
    """A page's own parameter (PAGE_PARAMS): the URL's value when this session did not write it (a link, a reload,
    back / forward), else `current` (the page's widget, while it is shown), else the value this session last chose
    (kept when the page is left), else None."""
    url = st.query_params.get(key)
    if url is not None and url != _written().get(key):
        return url
    return current if current is not None else st.session_state.get(_PARAMS, {}).get(key)


def set_page_param(key: str, value, default=None) -> None:
    """Keep a page's own parameter in the session (for the links back to the page) and in the URL; the page's default
    (`default`, which the same URL computes again) goes into the URL only once changed: a write on the run a link
    opened would push a second history entry, and back would land on the page itself."""
    value = str(value)
    st.session_state.setdefault(_PARAMS, {})[key] = value
    url = st.query_params.get(key)
    if url != value and not (url is None and default is not None and value == str(default)):
        st.query_params[key] = value
    st.session_state[_WRITTEN] = {**_written(), key: value}


def link_params(url_path: str | None, chosen: dict | None = None) -> dict[str, str]:
    """What a link to the page carries: the selection (`chosen`, else computed), then the page's own parameters this
    session chose."""
    kept = st.session_state.get(_PARAMS, {})
    return {**(selection() if chosen is None else chosen),
            **{k: kept[k] for k in PAGE_PARAMS.get(url_path or "", ()) if k in kept}}


class _Linked(StreamlitPage):
    """A page as its link's href names it. Streamlit's href is the page's url_path plus the query string, relative to
    the address shown: Home's url_path is "", so its href "?agent=…" opened the page being shown in a new tab (a click
    is routed by the page's hash, never by the href). "./" is the app's root, under any base path."""

    @property
    def url_path(self) -> str:
        return super().url_path or "./"


def _linked(page: StreamlitPage) -> StreamlitPage:
    out = copy.copy(page)
    out.__class__ = _Linked
    return out


# Streamlit pushes a history entry for every query-string change (its handlePageInfoChanged), so each episode chosen
# on the player was a step of back. A change of the page's own parameters alone (same path, the selection as it was)
# replaces the entry instead; a page switch or a new selection still pushes. Installed once per browser tab; its element
# takes no room (hidden, out of the sidebar's flex gaps).
_HISTORY = """<style>[data-testid=stElementContainer]:has(#seqlens-history) {display: none}</style>
<span id="seqlens-history"></span><script>(() => {
  const w = window.parent && window.parent.history ? window.parent : window;
  if (w.__seqlensHistory) return;
  w.__seqlensHistory = true;
  const own = new Set(%s), push = w.history.pushState.bind(w.history);
  w.history.pushState = function (state, title, url) {
    try {
      const next = new URL(url, w.location.href), now = new URL(w.location.href);
      const keys = [...new Set([...next.searchParams.keys(), ...now.searchParams.keys()])];
      const changed = keys.filter(k => next.searchParams.getAll(k).join('\u0000') !== now.searchParams.getAll(k).join('\u0000'));
      if (next.pathname === now.pathname && changed.length && changed.every(k => own.has(k)))
        return w.history.replaceState(state, title, url);
    } catch (e) { /* an address URL() cannot read: Streamlit's own push */ }
    return push(state, title, url);
  };
})();</script>"""


def links(slot) -> None:
    """The sidebar's page list (in `slot`, an st.empty at the top of the sidebar): ui/nav.py's pages as st.page_link,
    each carrying the selection in its query string and naming its page in its href (a new tab opens that page)."""
    chosen = selection()
    with slot.container():
        for page, (_, title, icon, url) in zip(pages(), PAGES):
            st.page_link(_linked(page), label=title, icon=icon, query_params=link_params(url, chosen) or None)
        st.html(_HISTORY % json.dumps(sorted({k for keys in PAGE_PARAMS.values() for k in keys})),
                unsafe_allow_javascript=True)
