"""Credit assignment: which past tokens and features an output of the agent depends on (captum)."""
from dataclasses import replace

import streamlit as st

from analysis.core.cache import cached
from analysis.interp.attribution import is_key_to_door, key_door_steps, targets_of
from analysis.interp.keydoor_credit import key_door_verdict, key_span_patching
from analysis.interp.spatial_credit import applies as spatial_applies
from models.loading import family_name, kinds_with
from ui import compare, exports
from ui.page import computed, figure, start
from ui.text import md_escape

sel = start("Credit assignment", "Which parts of the history does a decision depend on? Attributions (captum) "
            "split one output of the model — the action it takes, or for a Decision Transformer the return it "
            "predicts from the history (*value*, with the return-to-go hidden) — over every input token and "
            "feature of its context. Beside each map: the same map for a randomly re-initialised model (Adebayo et "
            "al. 2018). A map that looks alike for both says more about the input than about what the agent learned. "
            "For a value-based agent the outputs are Q of the logged action and V(s).")
if not (sel.agent.has("action") or sel.agent.has("q_values")):   # start(needs=) takes one set of capabilities
    st.info(f"This page needs {md_escape(' or '.join(family_name(k) for k in kinds_with(('action',))))} or a value-based "
            f"agent; **{md_escape(sel.agent_name)}** is {md_escape(family_name(sel.agent.kind))}. Pick another agent on the "
            "home page (e.g. cartpole-dt).")
    st.stop()
sel = replace(sel, needs=("q_values",) if sel.agent.has("q_values") else ("action",))   # what compare offers
sel = compare.select(sel)   # compare mode: a second agent beside every figure (?compare=)
agent, ds = sel.agent, sel.dataset
if ds.shaped and not spatial_applies(agent, ds):   # per-feature maps need vectors; cell / pixel credit needs a DT
    st.info(f"Credit assignment does not serve this agent on {md_escape(ds.obs_shape_text)} {md_escape(ds.obs_kind)}: "
            "credit on cells and pixels needs a Decision Transformer that reads them, and the per-feature maps need "
            "vector observations. Attention, Circuits and Context & memory read this agent.")
    st.stop()
METHODS = {"ig": "Integrated gradients", "saliency": "Saliency (gradient)", "ablation": "Ablation (replace by baseline)"}
TARGETS = {"action": "the action taken", "return": "the predicted return (a_t token)",
           "value": "the value: return predicted from history alone"}
LABELS = {**TARGETS, "q": "Q of the logged action", "v": "V(s), the state's value"}   # + a value agent's outputs


def _default_step(episode: int, length: int) -> tuple[int, str]:
    """An informative step to explain: on Key-to-Door the first phase-3 step (the door, where the key matters: the
    step the summary below explains too); elsewhere the middle of the episode, with a full context behind it."""
    if is_key_to_door(ds):
        ep = ds.episode(episode)
        kd = key_door_steps(ep.observations, ep.actions)
        if kd.phase3_step is not None:
            return int(kd.phase3_step), "the first phase-3 step, at the door, where having picked up the key matters"
    return length // 2, "the middle of the episode"


@st.fragment
def views(features: bool = True):
    """Per-token credit (and, for vector observations, per feature: a grid's or frame's per-value map is the spatial
    section's, drawn over the observation)."""
    collected = []
    c1, c2, c3, c4 = st.columns([1, 2, 2, 2])
    episode = int(c1.number_input("Episode", 0, ds.n_episodes - 1, 0, key="attr_episode"))
    length = int(ds.episode_lengths[episode])
    default, why = _default_step(episode, length)
    step = c2.slider("Step to explain", 0, length - 1, default, key="attr_step",
                     help=f"Default: {md_escape(why)}.") if length > 1 else 0
    targets = targets_of(agent)   # the outputs it predicts: action (+ return, value), or a value agent's Q and V
    target = c3.selectbox("Output", targets, format_func=LABELS.get, key="attr_target")
    method = c4.selectbox("Method", list(METHODS), format_func=METHODS.get, key="attr_method")
    with st.spinner("Attributing (and the randomized model)…"):
        params = dict(episode=episode, step=int(step), target=target, method=method)
        exports.show(figure(sel, "attribution_timesteps", **params), "attr_steps", collected)
        if features:
            exports.show(figure(sel, "attribution_features", **params), "attr_features", collected)
    # shaped agents: the spatial section below has the page's bundle (one bundle key per page name)
    exports.bundle_button(collected, "Credit assignment" if features else "Credit assignment per token", agent, ds,
                          **sel.paths)


@st.fragment
def spatial_views():
    c1, c2, c3, c4 = st.columns([1, 2, 2, 2])
    episode = int(c1.number_input("Episode", 0, ds.n_episodes - 1, 0, key="spatial_episode"))
    length = int(ds.episode_lengths[episode])
    step = c2.slider("Step to explain", 0, length - 1, length // 2, key="spatial_step",
                     help="Default: the middle of the episode.") if length > 1 else 0
    outputs = {"action": TARGETS["action"], "value": TARGETS["value"]}
    target = c3.selectbox("Output", [t for t in outputs if agent.has(t)], format_func=outputs.get, key="spatial_target")
    method = c4.selectbox("Method", ["saliency", "ig"], format_func=METHODS.get, key="spatial_method")
    if sel.other is None:
        scale = st.radio("Opacity", ["window", "step"], horizontal=True, key="spatial_scale",
                         format_func={"window": "one scale for the window", "step": "each step on its own scale"}.get,
                         help="One scale compares the steps; each step on its own shows where a faint step's credit is.")
    else:   # compare mode draws both agents on one scale per row (figures/spatial.spatial_compare)
        scale = "window"
        st.caption("Compare mode: both agents' credit on the explained step's observation and summed over each one's "
                   "window, one scale per row for both; B − A where each agent's strongest credit is at least a "
                   "quarter of the other's.")
    with st.spinner("Attributing every step's observation…"):
        try:
            f = figure(sel, "spatial_credit", episode=episode, step=int(step), target=target, method=method,
                       scale=scale)
        except ValueError as e:
            st.warning(md_escape(e))
            return
    collected = []
    exports.show(f, "spatial_credit", collected)
    exports.bundle_button(collected, "Credit assignment", agent, ds, **sel.paths)


if spatial_applies(agent, ds):   # agents that read grids, images or frame stacks
    st.subheader("Which steps and tokens: credit per return, observation and action")
    st.markdown("The whole observation of a step is one state token here: its credit is the sum over its cells or "
                "pixels (the section below spreads it over them). Integrated gradients and ablation start from the "
                "dataset's mean observation, action frequencies and mean return-to-go.")
    views(features=False)
    st.subheader("Which cells or pixels: credit on the observations")
    st.markdown("This agent reads grids or images, so its credit goes to cells and pixels, not to a line per "
                "observation value: for the observation of every step in the window, through the agent's state encoder, "
                "which grid cells (MiniGrid: the 3 values of a cell summed) or pixels (Atari: the 4 stacked frames "
                "summed) the output depends on. Each picture is the observation the agent saw, the credit laid over "
                "it; the last one sums the window. Integrated gradients start from the dataset's mean observation, "
                "the returns-to-go and actions held at their logged values. With saliency a step's total is its state "
                "token's credit above.")
    spatial_views()
else:
    views()

if all(t in targets_of(agent) for t in TARGETS) and is_key_to_door(ds):   # credit of all three outputs
    st.subheader("Key-to-Door: does the credit reach the key?")
    st.markdown("The key is picked up in phase 1 and only matters at the door in phase 3. The design expects the "
                "*action* to need no memory there (the return-to-go input already says whether the key was taken) and "
                "the *value* (return predicted with the return-to-go hidden) to remember. Shares are of the credit on "
                "the key-pickup step over a uniform share, the current step excluded; beside them, activation patching "
                "of the same episodes tests which output causally depends on the key step. What the numbers show is "
                "said under the chart.")
    n = st.slider("Episodes", 4, 32, 8, key="kd_episodes", help="IG on every episode, trained and randomized: ~2-4 s each.")
    if st.button("Run over episodes", key="kd_run") or st.session_state.get("kd_done") == n:
        with st.spinner(f"Attributing {int(n)} episodes × 3 outputs × 2 models, then patching them…"):
            f = figure(sel, "attribution_keydoor", max_episodes=int(n))
            patching = computed(sel, lambda: {out: cached("keydoor_span_patching", lambda out=out: key_span_patching(
                agent, ds, out, int(n))[0], agent, ds, output=out, max_pairs=int(n)) for out in ("value", "action")})
        st.session_state["kd_done"] = n
        exports.show(f, "attr_keydoor")
        verdict = key_door_verdict(f.data, patching, METHODS.get(f.params.get("method"), "attribution").lower())
        st.markdown(md_escape(" ".join(verdict.sentences)))
