"""Return conditioning: ask a Decision Transformer for different returns and see what it does."""
import numpy as np
import streamlit as st

from analysis.behaviour.sweeps import default_shifts, default_targets, return_range
from models.env_choice import can_act
from models.rollout import episode_limit
from ui import compare, exports
from ui.page import figure, start
from ui.text import md_escape

sel = start("Return conditioning", "A Decision Transformer is told the return it should achieve. If it learned "
            "what returns mean, asking for more gets more — up to the best returns in its training data. This page "
            "runs the agent in its environment for a range of targets (all episodes in one batched run), and replays "
            "logged episodes with the return-to-go shifted, which needs no environment and works on uploads.",
            needs=("return_conditioned",))
sel = compare.select(sel)   # compare mode: a second agent beside every figure (?compare=)
agent, ds = sel.agent, sel.dataset
collected = []
MAX_RUNS = 256   # targets x episodes: bounds the work one click can start
AUTO_STEPS = 30_000

st.subheader("Achieved vs target return")
env_ok = can_act(agent)
if not env_ok:
    st.info("This agent names no environment it can act in here, so only the offline replay below is available; "
            "choose an Environment on the home page to run the sweep.")
else:
    lo, hi = return_range(agent, ds)
    c1, c2, c3 = st.columns([2, 1, 1])
    text = c1.text_input("Target returns (comma-separated)", ", ".join(f"{t:g}" for t in default_targets(agent, dataset=ds)),
                         key="sweep_targets", help=f"The training data's returns span {lo:g} .. {hi:g}.")
    episodes = c2.number_input("Episodes per target", 1, 64, 8, key="sweep_episodes")
    seed = c3.number_input("Seed", 0, 10_000, 0, key="sweep_seed")
    try:
        targets = [float(t) for t in text.replace(";", ",").split(",") if t.strip()]
        if not targets or not np.isfinite(targets).all():
            raise ValueError
    except ValueError:
        st.error("Targets must be finite numbers separated by commas, e.g. 100, 300, 500.")
        st.stop()
    if len(targets) * episodes > MAX_RUNS:
        st.error(f"{len(targets)} targets × {int(episodes)} episodes is {len(targets) * int(episodes):,} runs; the page runs at most "
                 f"{MAX_RUNS} at once (use `cli.py evaluate` for more).")
        st.stop()
    params = dict(targets=targets, episodes=int(episodes), seed=int(seed))
    # Runs on first render only when bounded: up to AUTO_STEPS environment steps (CartPole: 6 x 8 x 500). A MuJoCo
    # task's 1,000-step episodes make the default 48,000 steps (~20 s at ~2,500 steps/s), so those start on a click.
    # compare mode: the second agent's sweep too (the bound holds per agent: choosing compare at most doubles the wait)
    acting = [agent] + ([sel.other.agent] if sel.other is not None and can_act(sel.other.agent) else [])
    limits = [episode_limit(a.config.env_id, a) for a in acting]
    per_run, worst = sum(limits), len(targets) * int(episodes) * sum(limits)
    key = (sel.key, tuple(targets), int(episodes), int(seed))
    go = len(targets) * int(episodes) * max(limits) <= AUTO_STEPS or st.session_state.get("sweep_done") == key
    if not go:
        c1, c2 = st.columns([3, 1])
        c1.caption(f"Up to {worst:,} environment steps ({len(targets)} targets × {int(episodes)} episodes × "
                   f"{per_run:,} steps each{' for both agents' if len(acting) > 1 else ''}): this runs on request, "
                   "with progress.")
        go = c2.button("Run the sweep", key="sweep_run", type="primary")
    if go:
        st.session_state["sweep_done"] = key
        bar = st.progress(0.0, text="Running all episodes in one batched vector env…")
        returns = figure(sel, "rtg_sweep_returns", progress=lambda f, m: bar.progress(f, text=md_escape(m) or f"{f:.0%} of episodes finished"),
                         **params)   # the sweep runs here, once; the two figures below reuse it from the cache
        bar.empty()
        exports.show(returns, "sweep_returns", collected)
        left, right = compare.columns(sel)   # full width each when two agents share a figure
        with left:
            exports.show(figure(sel, "rtg_sweep_actions", **params), "sweep_actions", collected)
        with right:
            exports.show(figure(sel, "rtg_sweep_attention", **params), "sweep_attention", collected)

st.subheader("Offline what-if: the logged episode with its return-to-go shifted")
st.markdown("Every return-to-go token of a logged episode is shifted by the same amount; the lines show the "
            "model's action (or the probability of the logged action) at each step. Lines that fan out mean the "
            "agent's behaviour depends on the return it is asked for. Shown first: the return as logged beside the "
            "largest shifts that still ask for a return the training data holds (five lines over a long episode "
            "tangle); add shifts below.")


above = tuple(collected)


def _default_shifts(offered: list[float], episode: int) -> list[float]:
    """No shift, and the largest shift down and up that keeps the episode's first return-to-go inside the training
    data's returns (a CartPole episode that earned 500 shifted up asks for 741, which the DT never saw: its line lies
    on the unshifted one); both extremes when neither stays inside or the range is unknown."""
    try:
        lo, hi = return_range(agent, ds)
    except ValueError:
        lo, hi = -np.inf, np.inf
    first = float(ds.returns_to_go[int(ds.episode_starts[episode])])
    inside = [s for s in (offered[0], offered[-1]) if lo <= first + s <= hi]
    return sorted({0.0, *(inside or [offered[0], offered[-1]])})


@st.fragment
def replay():
    collected = list(above)   # a fragment rerun starts from the figures drawn above it
    c1, c2 = st.columns([1, 3])
    episode = c1.number_input("Episode", 0, ds.n_episodes - 1, 0, key="shift_episode")
    offered = sorted(set(default_shifts(agent, ds) + [0.0]))
    shifts = c2.multiselect("Shifts of the return-to-go", offered, default=_default_shifts(offered, int(episode)),
                            key="shift_values", help="Default: no shift, and the largest shift each way that still asks "
                                                     "for a return the training data holds.")
    if shifts:
        exports.show(figure(sel, "rtg_shift_replay", episode=int(episode), shifts=sorted(float(s) for s in shifts)),
                     "shift_replay", collected)
    else:
        st.info("Choose at least one shift.")
    exports.bundle_button(collected, "Return conditioning", agent, ds, **sel.paths)


replay()
