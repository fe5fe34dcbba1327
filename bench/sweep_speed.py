"""Return-to-go sweep: 8 targets x 16 CartPole episodes with the shipped cartpole-dt.

Ours: analysis.behaviour.sweeps.rtg_sweep, all 128 episodes in one batched vector env with the KV-cached rollout.
Naive twin: rtg_sweep_naive, one episode at a time in its own env, the model's whole receptive field
recomputed every step. Env i is seeded seed + i in both and draws its action samples from its own
stream, so the episodes (returns, actions) must be identical.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.harness import one_thread, row, timed

ROOT = Path(__file__).resolve().parent.parent
TARGETS = [25, 50, 100, 200, 300, 400, 450, 500]
EPISODES = 16


def _bench(quick: bool) -> dict:
    from analysis.behaviour.sweeps import rtg_sweep, rtg_sweep_naive
    from models import load_agent
    from models.shipped import AGENT_DIR

    targets, episodes = ([25, 100], 2) if quick else (TARGETS, EPISODES)
    with one_thread():
        agent = load_agent(AGENT_DIR / "cartpole-dt")
        ours_s, ours = timed(lambda: rtg_sweep(agent, targets, episodes, seed=0))
        naive_s, naive = timed(lambda: rtg_sweep_naive(agent, targets, episodes, seed=0))
    same = bool(np.array_equal(ours.returns, naive.returns) and np.array_equal(ours.actions, naive.actions))
    return row(naive_s, ours_s, same, episodes=len(targets) * episodes, steps=int(ours.lengths.sum()),
               mean_return_by_target=[round(float(x), 1) for x in ours.returns.mean(1)])


BENCHMARKS = {"rtg_sweep": _bench}
