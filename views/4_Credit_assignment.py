"""Credit assignment: which past tokens and features an output of the agent depends on (captum)."""
import streamlit as st

from analysis.interp.attribution import is_key_to_door
from ui import compare, exports
from ui.page import figure, start

sel = start("Credit assignment", "Which parts of the history does a decision depend on? Attributions (captum) "
            "split one output of the model — the action it takes, or for a Decision Transformer the return it "
            "predicts from the history (*value*, with the return-to-go hidden) — over every input token and "
            "feature of its context. Beside each map: the same map for a randomly re-initialised model (Adebayo et "
            "al. 2018). A map that looks alike for both says more about the input than about what the agent learned.",
            needs=("action",))
sel = compare.select(sel)   # compare mode: a second agent beside every figure (?compare=)
agent, ds = sel.agent, sel.dataset
METHODS = {"ig": "Integrated gradients", "saliency": "Saliency (gradient)", "ablation": "Ablation (replace by baseline)"}
TARGETS = {"action": "the action taken", "return": "the predicted return (a_t token)",
           "value": "the value: return predicted from history alone"}


@st.fragment
def views():
    collected = []
    c1, c2, c3, c4 = st.columns([1, 2, 2, 2])
    episode = int(c1.number_input("Episode", 0, ds.n_episodes - 1, 0, key="attr_episode"))
    length = int(ds.episode_lengths[episode])
    step = c2.slider("Step to explain", 0, length - 1, length - 1, key="attr_step",
                     help="Default: the episode's last step, where the final reward is earned.") if length > 1 else 0
    targets = [t for t in TARGETS if agent.has(t)]   # the outputs it predicts: action (+ return, value)
    target = c3.selectbox("Output", targets, format_func=TARGETS.get, key="attr_target")
    method = c4.selectbox("Method", list(METHODS), format_func=METHODS.get, key="attr_method")
    with st.spinner("Attributing (and the randomized model)…"):
        params = dict(episode=episode, step=int(step), target=target, method=method)
        exports.show(figure(sel, "attribution_timesteps", **params), "attr_steps", collected)
        exports.show(figure(sel, "attribution_features", **params), "attr_features", collected)
    exports.bundle_button(collected, "Credit assignment", agent, ds, **sel.paths)


views()

if all(agent.has(t) for t in TARGETS) and is_key_to_door(ds):   # credit of all three outputs
    st.subheader("Key-to-Door: does the credit reach the key?")
    st.markdown("The key is picked up in phase 1 and only matters at the door in phase 3. In phase 3 the return-to-go "
                "input already says whether the key was taken, so the *action* needs no memory; the *value* (return "
                "predicted with the return-to-go hidden) must remember. Shares are of the credit on the key-pickup "
                "step over a uniform share, the current step excluded.")
    n = st.slider("Episodes", 4, 32, 8, key="kd_episodes", help="IG on every episode, trained and randomized: ~2-4 s each.")
    if st.button("Run over episodes", key="kd_run") or st.session_state.get("kd_done") == n:
        with st.spinner(f"Attributing {int(n)} episodes × 3 outputs × 2 models…"):
            f = figure(sel, "attribution_keydoor", max_episodes=int(n))
        st.session_state["kd_done"] = n
        exports.show(f, "attr_keydoor")
