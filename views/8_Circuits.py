"""Circuits: causal experiments on the agent — activation patching, direct logit attribution, logit lens, ablation."""
from dataclasses import replace

import numpy as np
import streamlit as st

from analysis.interp.attribution_markers import is_key_to_door
from models.env_choice import can_act
from models.errors import AgentError
from models.loading import family_name, kinds_with
from ui import compare, exports
from ui.page import figure, start
from ui.text import md_escape

sel = start("Circuits", "Attention shows where information *can* flow and gradients are local; these views ask what "
            "the agent actually *uses*. **Activation patching** runs the model on a corrupted input and copies one "
            "activation from a clean run into it: an activation whose patch restores the clean output carries what "
            "differs between the two. **Direct logit attribution** splits one output into each head's and MLP's "
            "write to the residual stream; the **logit lens** reads the output head off every layer; **ablation** "
            "removes heads and MLPs and measures what is lost, on the data and in the environment. For a value-based "
            "agent the same question is asked of its Q: hidden units (Markov) or the recurrent state (drqn) patched "
            "from another episode.")
if not (sel.agent.has("attention") or sel.agent.has("q_values")):   # start(needs=) takes one set of capabilities
    st.info(f"This page needs {md_escape(' or '.join(family_name(k) for k in kinds_with(('attention',))))} or a "
            f"value-based agent; **{md_escape(sel.agent_name)}** is {md_escape(family_name(sel.agent.kind))}. Pick another "
            "agent on the home page (e.g. cartpole-dt).")
    st.stop()
sel = replace(sel, needs=("q_values",) if sel.agent.has("q_values") else ("attention",))   # what compare offers
sel = compare.select(sel)   # compare mode: a second agent beside every figure (?compare=)
agent, ds = sel.agent, sel.dataset
collected = []
OUTPUTS = {"action": "the action (logit of the logged action)", "value": "the value (return predicted, RTG hidden)",
           "return": "the predicted return (a_t token)"}
CORRUPT = {"episode": "another episode at the same step", "rtg": "the same window, return-to-go shifted",
           "key": "Key-to-Door: an episode without the key"}


def _components(n_layer: int, n_head: int) -> list[str]:
    return [f"L{i}H{k}" for i in range(n_layer) for k in range(n_head)] + [f"L{i}MLP" for i in range(n_layer)]


def _tt():
    n_layer, n_head = agent.n_layer, agent.n_head
    st.subheader("Head and MLP patching on the token stream")
    st.markdown("The clean window is a logged stretch of transitions; the corrupted one has the transition `back` "
                "steps before the last replaced from another episode (0: the current observation). Each head's and "
                "MLP's output is patched from clean into corrupted at every position, in one batched forward; the map "
                "shows how much of the clean prediction each restores (0 = corrupted, 1 = clean).")

    @st.fragment
    def patching():
        c1, c2, c3 = st.columns(3)
        episode = int(c1.number_input("Episode", 0, ds.n_episodes - 1, 0, key="tt_patch_episode"))
        back = int(c2.number_input("Transition replaced (steps back)", 0, max(agent.context_length - 1, 0), 0,
                                   key="tt_patch_back"))
        target = c3.selectbox("Prediction", ["state", "reward", "value"], key="tt_patch_target")
        try:
            exports.show(figure(sel, "tt_patching_heads", episode=episode, back=back, target=target), "tt_patch", collected)
        except ValueError as e:
            st.error(md_escape(e))
    patching()

    st.subheader("Ablation")
    choice = st.multiselect("Heads and MLPs to remove", _components(n_layer, n_head), default=[f"L{n_layer - 1}H0"],
                            key="tt_ablate")
    mode = st.radio("Replace by", ["zero", "mean"], horizontal=True, key="tt_ablate_mode",
                    format_func=lambda m: {"zero": "zero", "mean": "mean over the data"}[m])
    if not choice:
        st.info("Choose at least one head or MLP to remove.")
    else:
        with st.spinner("Predicting with and without…"):
            exports.show(figure(sel, "tt_ablation", ablate=choice, mode=mode, n_windows=256), "tt_ablation", collected)


def _dt():
    n_layer, n_head = agent.n_layer, agent.n_head
    outputs = [o for o in OUTPUTS if agent.has(o)]
    corrupts = [c for c in CORRUPT if c != "key" or is_key_to_door(ds)]

    st.subheader("Activation patching")

    @st.fragment
    def patching():
        figs = []
        c1, c2, c3 = st.columns([2, 1, 2])
        corrupt = c1.selectbox("Corrupted input", corrupts, format_func=CORRUPT.get, key="circ_corrupt",
                               index=corrupts.index("key") if "key" in corrupts else 0)
        # the value head hides every return-to-go, so shifting it cannot change the value
        fit = [o for o in outputs if not (corrupt == "rtg" and o == "value")]
        output = c3.selectbox("Output", fit, format_func=OUTPUTS.get, key=f"circ_output_{corrupt}",
                              index=fit.index("value") if corrupt == "key" and "value" in fit else 0)
        params = dict(corrupt=corrupt, output=output)
        if corrupt != "key":
            c4, c5, c6 = st.columns(3)
            episode = int(c4.number_input("Clean episode", 0, ds.n_episodes - 1, 0, key="circ_episode"))
            length = int(ds.episode_lengths[episode])
            step = int(c5.number_input("Step", 0, length - 1, length // 2, key="circ_step"))
            params.update(episode=episode, step=step)
            if corrupt == "episode":
                long_enough = [e for e in np.flatnonzero(ds.episode_lengths > step) if e != episode]
                params["corrupt_episode"] = int(c6.number_input(
                    "Corrupted episode", 0, ds.n_episodes - 1, int(long_enough[0]) if long_enough else 0,
                    key="circ_corrupt_episode", help="Default: the first other episode that lasts past the step."))
            else:
                params["rtg_shift"] = float(c6.number_input("Return-to-go shift", value=0.0, key="circ_rtg_shift",
                                                            help="0: the default: minus the logged return-to-go (asking for nothing), or the best return in the data where that is already 0"))
                if params["rtg_shift"] == 0.0:
                    params["rtg_shift"] = None
        try:
            with st.spinner("Patching every position of every layer…"):
                positions = figure(sel, "patching_positions", **params)
            exports.show(positions, "patch_positions", figs)
            # full width each: a half column drew the heads grid at ~260 px, its cells and labels unreadable
            exports.show(figure(sel, "patching_heads", **params), "patch_heads", figs)
            # at the clean step the patching used (its params name it, whichever corruption)
            dla = {"episode": positions.params["episode"], "step": positions.params["step"], "output": output}
            exports.show(figure(sel, "direct_logit_attribution", **dla), "dla", figs)
            st.caption("Direct logit attribution at the clean step: each head's and MLP's write, read through the "
                       "output head with the final layer norm's scale frozen; the parts sum to the output.")
        except ValueError as e:
            st.error(md_escape(e))
        st.session_state["circ_figs"] = figs
    patching()

    st.subheader("Logit lens")

    @st.fragment
    def lens():
        figs = []
        c1, c2, c3 = st.columns([1, 2, 1])
        episode = int(c1.number_input("Episode", 0, ds.n_episodes - 1, 0, key="lens_episode"))
        output = c2.selectbox("Output", outputs, format_func=OUTPUTS.get, key="lens_output")
        scale = c3.radio("Colour scale", ["data", "fixed"], key="lens_scale",
                         format_func={"data": "fit the values", "fixed": "fixed range"}.get)
        exports.show(figure(sel, "logit_lens", episode=episode, output=output, scale=scale), "lens", figs)
        st.session_state["lens_figs"] = figs
    lens()

    st.subheader("Ablation")
    c1, c2, c3 = st.columns([3, 1, 1])
    choice = c1.multiselect("Heads and MLPs to remove", _components(n_layer, n_head), default=[f"L{n_layer - 1}H0"],
                            key="abl_choice")
    mode = c2.radio("Replace by", ["zero", "mean"], key="abl_mode",
                    format_func=lambda m: {"zero": "zero", "mean": "mean over the data"}[m])
    episodes = c3.number_input("Episodes in the environment", 0, 32, 0, key="abl_episodes", disabled=not can_act(agent),
                               help="0: on the data only. Each episode runs twice (intact and ablated).")
    if not choice:
        st.info("Choose at least one head or MLP to remove.")
    else:
        key = (sel.key, tuple(choice), mode, int(episodes))
        if st.button("Run the ablation", key="abl_run", type="primary") or st.session_state.get("abl_done") == key:
            st.session_state["abl_done"] = key
            bar = st.progress(0.0, text="Action predictions with and without, then the environment…")
            exports.show(figure(sel, "ablation", progress=lambda f, m: bar.progress(f, text=md_escape(m) or "running"), ablate=choice,
                                mode=mode, n_steps=1000, episodes=int(episodes)), "ablation", collected)
            bar.empty()


def _values():
    recurrent = agent.has("recurrent")
    st.subheader("Patching the recurrent state" if recurrent else "Patching hidden units")
    st.markdown("The recurrent state after a step of the corrupted episode is replaced by the clean episode's state "
                "after the same step, and the corrupted episode runs on: how Q of its logged action (or V) moves at "
                "every later step says how long what the state carried lasts." if recurrent else
                "The clean observation is a step of one episode, the corrupted one the same step of another; each "
                "hidden unit is copied from the clean run into the corrupted one: the share of the clean Q (or V) it "
                "restores (0 = carries none of the difference, 1 = all of it).")

    @st.fragment
    def patching():
        figs = []
        c1, c2, c3, c4 = st.columns(4)
        episode = int(c1.number_input("Clean episode", 0, ds.n_episodes - 1, 0, key="qpatch_episode"))
        length = int(ds.episode_lengths[episode])
        step = int(c2.number_input("Step", 0, length - 1, length // 2, key="qpatch_step"))
        # an episode that sees the same observation at the step gives a Markov agent the same Q: nothing to patch
        # (Key-to-Door's first steps are alike in every episode), so the default sees another one there
        others = [int(e) for e in np.flatnonzero(ds.episode_lengths > step) if e != episode]
        seen = ds.observations[int(ds.episode_starts[episode]) + step]
        unlike = [e for e in others if not np.array_equal(ds.observations[int(ds.episode_starts[e]) + step], seen)]
        default = (unlike or others or [0])[0]
        corrupt = int(c3.number_input("Corrupted episode", 0, ds.n_episodes - 1, default, key="qpatch_corrupt",
                                      help="Default: the first other episode that lasts past the step and sees another "
                                           "observation there."))
        output = c4.selectbox("Output", ["q", "v"], key="qpatch_output",
                              format_func={"q": "Q of the logged action", "v": "V(s)"}.get)
        name = "q_patching_memory" if recurrent else "q_patching_units"
        try:
            with st.spinner("Patching…"):
                exports.show(figure(sel, name, episode=episode, step=step, corrupt_episode=corrupt, output=output),
                             "qpatch", figs)
        except (AgentError, ValueError) as e:
            st.error(md_escape(e))
        st.session_state["circ_figs"] = figs
    patching()


if agent.has("q_values"):
    _values()
elif agent.has("tokens"):
    _tt()
else:
    _dt()
exports.bundle_button(st.session_state.get("circ_figs", []) + st.session_state.get("lens_figs", []) + collected,
                      "Circuits", agent, ds, **sel.paths)
