"""Decision Transformer rollouts: 32 CartPole envs x 500 steps, a 3-layer 64-wide DT with K = 20.

Ours: the KV-cached rollout (each step feeds only the new tokens a_{t-1}, R_t, s_t against a sliding cache
of the last K steps per layer). Naive twin: `start_rollout(use_cache=False)`, which recomputes the model's
whole receptive field (the last n_layer*K steps, banded mask) every step. Both sample from the same seeded
generator in the same environments, so identical actions are required. The model is untrained (seeded
random weights): the cost is what is measured. Environments step inside both timings alike.

Torch runs on one thread here: at batch 32 each op is tiny, and OpenMP threads spinning on shared cores
made both sides ~100x slower and noisy on the 2-core build machine.
"""
from __future__ import annotations

import time

import numpy as np

from bench.harness import one_thread, row

N_ENVS, STEPS, K, HIDDEN, N_LAYER = 32, 500, 20, 64, 3


def _model():
    import torch

    from models.base import AgentConfig
    from models.decision_transformer import DecisionTransformer

    torch.manual_seed(0)
    cfg = AgentConfig(kind="dt", obs_dim=4, act_dim=1, discrete=True, n_actions=2, context_length=K, max_ep_len=1000,
                      rtg_scale=100.0, env_id="CartPole-v1", hparams={"hidden": HIDDEN, "n_layer": N_LAYER, "n_head": 1})
    return DecisionTransformer(cfg).eval()


def _rollout(model, n_envs: int, steps: int, use_cache: bool) -> tuple[float, np.ndarray]:
    import gymnasium as gym

    envs = gym.make_vec("CartPole-v1", num_envs=n_envs, vectorization_mode="sync")
    obs, _ = envs.reset(seed=0)
    ro = model.start_rollout(n_envs, np.full(n_envs, 500.0), sample=True, seed=0, use_cache=use_cache)
    actions = np.empty((steps, n_envs), np.int64)
    t0 = time.perf_counter()
    for t in range(steps):
        actions[t] = ro.act(obs)
        obs, rewards, _, _, _ = envs.step(actions[t])   # autoreset: finished envs restart, t keeps counting
        ro.observe(rewards)
    seconds = time.perf_counter() - t0
    envs.close()
    return seconds, actions


def _bench(quick: bool) -> dict:
    n_envs, steps = (4, 60) if quick else (N_ENVS, STEPS)
    with one_thread():
        model = _model()
        _rollout(model, n_envs, 5, True)   # warm-up: first-call allocations
        ours, a_ours = _rollout(model, n_envs, steps, True)
        naive, a_naive = _rollout(model, n_envs, steps, False)
    return row(naive, ours, np.array_equal(a_ours, a_naive), ratio_digits=1, n_envs=n_envs, steps=steps,
               context_length=K, n_layer=N_LAYER, hidden=HIDDEN, torch_threads=1,
               ms_per_step=round(1000 * ours / steps, 2), naive_ms_per_step=round(1000 * naive / steps, 2))


BENCHMARKS = {"kv_cache_rollout": lambda quick=False: _bench(quick)}

if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    print(_bench("--quick" in sys.argv))
