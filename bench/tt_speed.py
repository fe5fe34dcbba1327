"""Trajectory Transformer beam search on a Pendulum-sized model (obs 3, act 1: 6 tokens per transition).

Ours: beam search with a KV cache (each new token is one query against cached keys and values).
Naive twin: the reference's `beam_plan` way, a full forward pass over the whole sequence for every
sampled token. Both draw the same random numbers in the same order, so the plans must be identical.
The model is randomly initialised (the cost does not depend on the weights); the discretizer is fit
on the shipped Pendulum sample data and the plan starts from a real context.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.harness import one_thread, row, timed

ROOT = Path(__file__).resolve().parent.parent
FULL = dict(hidden=128, n_layer=4, n_head=4, context=20, horizon=15, beam_width=32, n_expand=2, envs=1)
QUICK = dict(hidden=64, n_layer=2, n_head=4, context=8, horizon=5, beam_width=8, n_expand=2, envs=1)


def _model(size: dict):
    from models.base import AgentConfig
    from models.trajectory_transformer import TrajectoryTransformer
    from trajectories import load_dataset
    from trajectories.samples import SAMPLE_DIR

    ds = load_dataset(SAMPLE_DIR / "pendulum.npz")
    cfg = AgentConfig(kind="tt", obs_dim=3, act_dim=1, discrete=False, context_length=size["context"],
                      action_low=[-2.0], action_high=[2.0], env_id="Pendulum-v1",
                      hparams=dict(hidden=size["hidden"], n_layer=size["n_layer"], n_head=size["n_head"], n_bins=100))
    torch.manual_seed(0)
    return TrajectoryTransformer.for_dataset(cfg, ds).eval(), ds


def _bench(quick: bool) -> dict:
    # One intra-op thread for both sides: on a shared 2-core machine, OpenMP threads waiting for a
    # descheduled sibling cost milliseconds per op, which buries the per-token cost (30x measured).
    with one_thread():
        return _bench_sizes(QUICK if quick else FULL)


def _bench_sizes(size: dict) -> dict:
    model, ds = _model(size)
    keep = size["context"] - size["horizon"]
    prefixes = []
    for e in range(size["envs"]):
        ep = ds.episode(e)
        t = 60
        prefixes.append(model.context_tokens(ep.observations[:t + 1], ep.actions[:t], ep.rewards[:t], keep))
    prefix = np.stack(prefixes)
    kw = dict(horizon=size["horizon"], beam_width=size["beam_width"], n_expand=size["n_expand"])

    def run(use_cache: bool):
        return model.plan_tokens(prefix, generator=torch.Generator().manual_seed(0), use_cache=use_cache, **kw)

    run(True)  # warm-up: first calls pay for allocator and kernel setup
    repeats = 1 if size is QUICK else 2
    ours, ours_plans = timed(lambda: run(True), repeat=repeats)
    naive, naive_plans = timed(lambda: run(False), repeat=repeats)
    same = all(np.array_equal(a.tokens, b.tokens) and np.array_equal(a.first_action, b.first_action)
               for a, b in zip(ours_plans, naive_plans))
    return row(naive, ours, same, ratio_digits=1, beam_width=size["beam_width"], horizon=size["horizon"],
               n_expand=size["n_expand"], context_transitions=size["context"], n_params=model.n_params,
               max_score_diff=float(max(abs(a.score - b.score) for a, b in zip(ours_plans, naive_plans))))


BENCHMARKS = {"tt_beam_kv_cache": lambda quick=False: _bench(quick)}

if __name__ == "__main__":
    import json
    import sys

    sys.path.insert(0, str(ROOT))
    print(json.dumps(_bench("--quick" in sys.argv)))
