"""Context & memory: does a longer context beat the Markov assumption (K = 1)?"""
import streamlit as st

from analysis.behaviour.context import shipped_reference_capabilities
from models.env_choice import can_act
from ui import exports
from ui.page import figure, start
from ui.text import md_escape

sel = start("Context & memory", "Does a longer history make the agent better, and is the gain memory of the past or "
            "something else in the architecture? This page cuts the Decision Transformer's history to its last K steps and measures, for each K, how "
            "often it predicts the logged action (on the data, instant) and how much return it earns in the environment "
            "(one batched run). Beside it are agents trained separately: an MLP that sees only the current observation "
            "(the Markov assumption), a GRU that reads the whole history, and DTs trained with other K. On the "
            "velocity-masked tasks one observation does not give the velocities, so what K = 1 loses there is memory.",
            needs=("step_tokens",))
agent, ds = sel.agent, sel.dataset
collected = []

# A Markov reference comes from the shipped agents of the same environment; for any other agent (an import, an
# upload) one is trained here on request only: ~1,000 steps take 5-15 s, too long for a first render.
has_mlp = "markov" in shipped_reference_capabilities(agent)
mlp_steps = 0
if not has_mlp:
    c1, c2 = st.columns([3, 1])
    c1.caption("No shipped Markov reference reads this agent's environment. Train one here (an MLP on the current "
               "observation only, 1,000 steps on this dataset) to compare K = 1 with a policy that never had history.")
    if c2.button("Train an MLP reference", key="ctx_mlp") or st.session_state.get("ctx_mlp_done") == sel.key:
        st.session_state["ctx_mlp_done"] = sel.key
        mlp_steps = 1000
# frame stacks: a 6-layer Atari DT's windows at every context length over 500 steps took 11 s (24 s on a loaded
# machine); 200 steps, with each frame embedded once for every context, still took 4.8-5.9 s on a 100k-step file whose
# frames were not yet in the page cache (a third of it reading them): 128 steps keep it under 5 s
n_steps = 128 if ds.obs_kind == "frame stacks" else 500
with st.spinner("Action predictions for every context length (and the reference agents)…"):
    exports.show(figure(sel, "context_accuracy", n_steps=n_steps, mlp_steps=mlp_steps), "ctx_accuracy", collected)

st.subheader("Return in the environment")
if not can_act(agent):
    st.info("This agent names no environment it can act in here; only the accuracy on data is available "
            "(choose an Environment on the home page).")
else:
    c1, c2 = st.columns(2)
    episodes = c1.slider("Episodes per context length", 2, 16, 4, key="ctx_episodes")
    run = c2.button("Run in the environment", key="ctx_run", type="primary")
    if run or st.session_state.get("ctx_done") == episodes:
        bar = st.progress(0.0, text="Every context length × episode in one batched rollout, then the reference agents…")
        f = figure(sel, "context_returns", progress=lambda frac, msg: bar.progress(frac, text=md_escape(msg)), episodes=int(episodes), mlp_steps=mlp_steps)
        bar.empty()
        st.session_state["ctx_done"] = episodes
        exports.show(f, "ctx_returns", collected)
exports.bundle_button(collected, "Context and memory", agent, ds, **sel.paths)
