"""Action-token attention for every step of 100 episodes (shipped cartpole-dt on the shipped CartPole data).

Ours: analysis.interp.attention.steps_attention, all windows of the 100 episodes in batches of 512, one forward
each. Naive twin: a forward per step (batch of one), as a per-step hook tool does. Same windows, same
model; the attention rows must agree to float precision.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
N_EPISODES = 100


def _bench(quick: bool) -> dict:
    import torch

    from analysis.interp.attention import steps_attention, steps_attention_naive
    from analysis.core.inputs import training_data
    from models import load_agent
    from trajectories import load_dataset
    from models.shipped import AGENT_DIR
    from trajectories.samples import SAMPLE_DIR

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        agent = load_agent(AGENT_DIR / "cartpole-dt")
        data = training_data(agent, load_dataset(SAMPLE_DIR / "cartpole.npz"))
        n_eps = 2 if quick else N_EPISODES
        steps = np.arange(data.starts[0], data.ends[n_eps - 1])
        steps_attention(agent, data, steps[:64])     # warm-up
        t0 = time.perf_counter()
        ours = steps_attention(agent, data, steps)
        t1 = time.perf_counter()
        naive = steps_attention_naive(agent, data, steps)
        t2 = time.perf_counter()
    finally:
        torch.set_num_threads(threads)
    diff = float(np.abs(ours - naive).max())
    return {"baseline_s": round(t2 - t1, 4), "ours_s": round(t1 - t0, 4), "ratio": round((t2 - t1) / (t1 - t0), 2),
            "same_results": diff < 1e-5, "episodes": n_eps, "steps": int(len(steps)), "max_abs_diff": diff}


BENCHMARKS = {"attention_dataset": _bench}
