"""Action-token attention for every step of 100 episodes (shipped cartpole-dt on the shipped CartPole data).

Ours: analysis.interp.attention.steps_attention, all windows of the 100 episodes in batches of 512, one forward
each. Naive twin: a forward per step (batch of one), as a per-step hook tool does. Same windows, same
model; the attention rows must agree to float precision.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.harness import one_thread, row, timed

ROOT = Path(__file__).resolve().parent.parent
N_EPISODES = 100


def _bench(quick: bool) -> dict:
    from analysis.interp.attention import steps_attention, steps_attention_naive
    from analysis.core.inputs import training_data
    from models import load_agent
    from trajectories import load_dataset
    from models.shipped import AGENT_DIR
    from trajectories.samples import SAMPLE_DIR

    with one_thread():
        agent = load_agent(AGENT_DIR / "cartpole-dt")
        data = training_data(agent, load_dataset(SAMPLE_DIR / "cartpole.npz"))
        n_eps = 2 if quick else N_EPISODES
        steps = np.arange(data.starts[0], data.ends[n_eps - 1])
        steps_attention(agent, data, steps[:64])     # warm-up
        ours_s, ours = timed(lambda: steps_attention(agent, data, steps))
        naive_s, naive = timed(lambda: steps_attention_naive(agent, data, steps))
    diff = float(np.abs(ours - naive).max())
    return row(naive_s, ours_s, diff < 1e-5, digits=4, episodes=n_eps, steps=int(len(steps)), max_abs_diff=diff)


BENCHMARKS = {"attention_dataset": _bench}
