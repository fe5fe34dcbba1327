"""What every analysis page starts with: its title and intro, and the agent + dataset chosen on the home page
(checked to fit each other; a mismatch is one sentence, and the page stops)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import streamlit as st

from analysis import catalog
from models.errors import AgentError
from ui.agents import agent_path, current_agent_name, get_agent
from ui.data import all_datasets, current_dataset_name, dataset_path
from ui.nav import sidebar


@dataclass
class Selection:
    agent_name: str
    agent: object
    dataset_name: str
    dataset: object
    key: str = ""   # cache key of the pair: the agent object (uploads are per session) and the data's content

    def __post_init__(self):
        self.key = self.key or f"{self.agent_name}|{self.dataset_name}|{id(self.agent)}|{self.dataset.fingerprint()}"

    @property
    def paths(self) -> dict:
        return {"agent_path": agent_path(self.agent_name), "data_path": dataset_path(self.dataset_name)}


def start(title: str, intro: str, kinds: tuple[str, ...] | None = None) -> Selection:
    st.set_page_config(page_title=f"seqlens · {title}", layout="wide")
    sidebar()
    st.title(title)
    st.markdown(intro)
    agent_name, dataset_name = current_agent_name(), current_dataset_name()
    if agent_name is None or dataset_name is None:
        st.warning("No agent or dataset loaded: run `make sample-agents` / `make sample-data`, or upload on the home page.")
        st.stop()
    agent, ds = get_agent(agent_name), all_datasets()[dataset_name]
    st.caption(f"Agent **{agent_name}** ({agent.kind}, K={agent.context_length}) on dataset **{dataset_name}** "
               f"({ds.n_episodes:,} episodes). Change them on the home page.")
    if kinds and agent.kind not in kinds:
        names = {"dt": "a Decision Transformer", "tt": "a Trajectory Transformer", "mlp": "an MLP policy",
                 "gru": "a GRU policy", "dynamics": "a dynamics model"}
        st.info(f"This page needs {' or '.join(names[k] for k in kinds)}; **{agent_name}** is {names.get(agent.kind, agent.kind)}. "
                "Pick another agent on the home page (e.g. cartpole-dt).")
        st.stop()
    from models.evaluate import check_dataset

    try:
        check_dataset(agent, ds)
    except AgentError as e:
        st.error(f"{e} Pick a matching agent or dataset on the home page.")
        st.stop()
    return Selection(agent_name, agent, dataset_name, ds)


@st.cache_data(show_spinner=False, max_entries=128)
def _make(key: str, name: str, params: str, _agent, _dataset) -> catalog.Figured:
    return catalog.make(name, _agent, _dataset, **json.loads(params))


def figure(sel: Selection, name: str, **params) -> catalog.Figured:
    """A catalog figure for the selection, cached per (agent, dataset, figure, parameters): the same code
    as `cli.py export`, so a page's figure and its headless export are one and the same."""
    return _make(sel.key, name, json.dumps(params, sort_keys=True), sel.agent, sel.dataset)
