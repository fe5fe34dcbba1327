"""Values: what a value function says about a logged episode — Q(s, ·), V(s), the advantage of the logged action — and
a Decision Transformer's value head and return prediction on the same steps (compare mode)."""
from dataclasses import replace

import streamlit as st

from models.errors import AgentError
from models.loading import family_name
from ui import compare, exports
from ui.page import figure, start
from ui.text import md_escape

sel = start("Values", "A value function says which states the agent likes: V(s) is the return it expects from a state "
            "and Q(s, a) the return after each action there, drawn over a logged episode beside what the episode really "
            "returned (dotted), with the action it would take (crosses) against the one logged (circles) and how much "
            "worse it thinks the logged one is (the advantage). A Decision Transformer has no Q; compare mode puts its "
            "value head (return-to-go hidden) and return prediction beside a value agent's V(s), on the same steps and "
            "one axis.")
agent, ds = sel.agent, sel.dataset
has_q = agent.has("q_values")
is_dt = agent.has("value") and agent.has("return") and agent.has("step_tokens")
if not (has_q or is_dt):
    st.info(f"This page needs a value-based agent (Q(s, a) and V(s)) or a Decision Transformer (its value head); "
            f"**{md_escape(sel.agent_name)}** is {md_escape(family_name(agent.kind))}. Pick another agent on the home "
            "page.")
    st.stop()
if not has_q:
    st.info(f"**{md_escape(sel.agent_name)}** is {md_escape(family_name(agent.kind))}: it has no Q-values, so this page "
            "shows its value head and return prediction alone. Compare it with a value-based agent below to put that "
            "agent's V(s) beside them.")
sel = compare.select(sel)   # compare mode: a second agent beside every figure (?compare=)
collected = []

KEY = "val_episode"
wanted = st.session_state.get(KEY, 0)
if isinstance(wanted, bool) or not isinstance(wanted, int) or not 0 <= wanted < ds.n_episodes:
    st.warning(f"Episode {md_escape(wanted)} is not in {md_escape(ds.source)}: pick one from 0 to {md_escape(ds.n_episodes - 1)}. "
               "Showing episode 0.")
    st.session_state[KEY] = 0
episode = int(st.number_input("Episode", 0, ds.n_episodes - 1, key=KEY,
                              help="A logged episode of the dataset: the agent's values at each of its steps."))

alone = sel   # the Q map and the advantage: a second agent without Q-values (a DT) has nothing to put beside them
if sel.other is not None and has_q and not sel.other.agent.has("q_values"):
    alone = replace(sel, other=None, key="")
    st.caption(f"{md_escape(sel.other.agent_name)} has no Q-values: it is beside {md_escape(sel.agent_name)} in the "
               "values figure; Q(s, a) and the advantage show this agent alone.")
for name in ["value_trace"] + (["q_values", "advantage"] if has_q else []):
    try:
        with st.spinner("Reading the values of every step…"):
            f = figure(sel if name == "value_trace" else alone, name, episode=episode)
    except (AgentError, ValueError) as e:
        st.error(md_escape(e))
        continue
    exports.show(f, f"val_{name}", collected)
exports.bundle_button(collected, "Values", agent, ds, **sel.paths)
