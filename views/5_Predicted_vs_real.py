"""Predicted vs real: the model's imagined future beside what really happened, and error by horizon."""

import numpy as np
import streamlit as st

from models.loading import capabilities_of
from models.report import agent_rows
from ui import compare, exports
from ui.page import figure, start
from ui.text import md_escape

sel = start("Predicted vs real", "A model that plans imagines the future. Feed it the logged actions from a "
            "chosen step and compare what it predicts with what the episode really did: per feature (predicted "
            "dashed), and as error by how far ahead it looks. A one-step dynamics model fed its own predictions "
            "compounds its errors; a sequence model conditions on the whole history. A Trajectory Transformer's "
            "error cannot go below its quantization floor (dotted).", needs=("state",))
sel = compare.select(sel)   # compare mode: a second agent beside every figure (?compare=)
agent, ds = sel.agent, sel.dataset
collected = []


def _one_step_note(f) -> str:
    """What a DT's figure shows, from its own data: the reward row is the return head's error again, not a prediction."""
    d = f.data
    ret, rew = d[d["feature"] == d["feature"].iloc[0]], d[d["feature"] == "reward"]
    err = float(np.nanmean(np.abs(ret["predicted"].to_numpy() - ret["real"].to_numpy())))
    spread = float(np.nanstd(rew["real"].to_numpy()))
    return ("A Decision Transformer predicts one step ahead at every step (its return head), so there is no start step "
            "or horizon to choose. The lower panel, reward, is not a second prediction: it is the reward the return "
            "head implies, R(t) − predicted R(t+1), so its error is the upper panel's with the sign flipped (mean "
            f"|error| {err:.3g} in both; the logged reward's own spread is {spread:.3g}). Read the upper panel.")


@st.fragment
def traces():
    collected = []
    one_step = agent.has("return")   # a DT: R(t+1) at every step; start and horizon would change nothing
    c1, c2, c3 = st.columns([1, 3, 1])
    episode = int(c1.number_input("Episode", 0, ds.n_episodes - 1, 0, key="pvr_episode"))
    length = int(ds.episode_lengths[episode])
    if one_step:
        f = figure(sel, "predicted_vs_real", episode=episode)
        exports.show(f, "pvr", collected)
        st.caption(md_escape(_one_step_note(f)))
    else:
        horizon = int(c3.number_input("Horizon (steps)", 1, 50, min(20, max(1, length - 1)), key="pvr_horizon"))
        start_step = c2.slider("Start step", 0, max(length - 2, 0), min(length // 3, max(length - 2, 0)),
                               key="pvr_start") if length > 2 else 0
        exports.show(figure(sel, "predicted_vs_real", episode=episode, start=int(start_step), horizon=horizon), "pvr",
                     collected)
    st.session_state["pvr_figs"] = collected


traces()

if agent.has("dynamics"):
    st.subheader("Error by horizon")
    same_env = [r["agent"] for r in agent_rows() if "dynamics" in capabilities_of(r["kind"]) and r["agent"] != sel.agent_name
                and r["environment"] == (agent.config.env_id or "—")]
    others = st.multiselect("Compare with shipped predictors", same_env, default=same_env[:1], key="pvr_others",
                            help="Other agents trained on the same environment: a one-step dynamics model against a "
                                 "Trajectory Transformer shows compounding error against memory.")
    h1, h2 = st.columns(2)
    n_starts = h1.select_slider("Start steps averaged", [64, 128, 256, 512], 256, key="pvr_starts")
    # 20 keeps the first view fast; the TT paper plots compounding error to 100 steps (a TT's window slides past its
    # context, re-reading it once per predicted transition). Measured, pendulum-tt + pendulum-dynamics, 256 starts,
    # one shared core: 10 s at 20, 57 s at 100
    horizons = h2.select_slider("Horizons", [20, 50, 100], 20, key="pvr_horizons",
                                help="How far ahead to predict open loop. The TT paper's compounding-error plot goes "
                                     "to 100 steps; a Trajectory Transformer takes about six times as long at 100 as "
                                     "at 20.")
    with st.spinner("Predicting from every start…"):
        f = figure(sel, "prediction_error_compare", others=others, horizons=int(horizons), n_starts=int(n_starts),
                   label=sel.agent_name)
    exports.show(f, "pvr_error", collected)
    rows = f.data[f.data["horizon"].isin([1, 5, 10, 20, 50, 100])]
    table = rows.pivot_table(index=["agent", "model"] if "agent" in rows else "model", columns="horizon", values="mean_l2",
                             aggfunc="first", sort=False)   # compare mode: per agent (B may also be among the others)
    st.dataframe(table.rename(columns=lambda h: f"H={h}"), key="pvr_table")
exports.bundle_button(st.session_state.get("pvr_figs", []) + collected, "Predicted vs real", agent, ds, **sel.paths)
