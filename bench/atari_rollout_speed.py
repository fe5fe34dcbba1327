"""A frame-stack DT acting: the shipped breakout-dt (atari_conv encoder, K = 10, unbanded) in 4 Breakout envs.

Ours: each step's frame stack goes through the conv encoder once, when it arrives, and the window's forward reads the
kept embeddings (models/dt_rollout.py `embed`). Naive twin: the same rollout re-embedding all K frames of every env at
every step (what it did before: a return sweep of breakout-dt took minutes). Both draw their actions from the same
uniforms in the same seeded envs; embeddings computed in another batch differ in the last bits (1e-6 of the value
head), so equal actions are checked, not equal logits.
"""
from __future__ import annotations

import time

import numpy as np

from bench.harness import one_thread, row

N_ENVS, STEPS = 4, 120


def _rollout(agent, n_envs: int, steps: int, embed: bool) -> tuple[float, np.ndarray]:
    import gymnasium as gym

    import envs  # noqa: F401 - registers seqlens/DTAtari-*

    venv = gym.make_vec(agent.config.env_id, num_envs=n_envs, vectorization_mode="sync")
    obs, _ = venv.reset(seed=0)
    uniforms = np.random.default_rng(0).random((n_envs, steps + 1), dtype=np.float32)
    ro = agent.start_rollout(n_envs, np.full(n_envs, 10.0), sample=True, seed=0, uniforms=uniforms)
    ro.embed = embed
    actions = np.empty((steps, n_envs), np.int64)
    seconds = 0.0
    for t in range(steps):
        t0 = time.perf_counter()
        actions[t] = ro.act(obs)
        seconds += time.perf_counter() - t0   # the agent's time only: the emulator steps alike in both
        obs, rewards, _, _, _ = venv.step(actions[t])
        ro.observe(rewards)
    venv.close()
    return seconds, actions


def _bench(quick: bool) -> dict:
    from models import load_agent
    from models.shipped import AGENT_DIR

    n_envs, steps = (2, 30) if quick else (N_ENVS, STEPS)
    with one_thread():
        agent = load_agent(AGENT_DIR / "breakout-dt")
        _rollout(agent, n_envs, 3, True)   # warm-up
        ours, a_ours = _rollout(agent, n_envs, steps, True)
        naive, a_naive = _rollout(agent, n_envs, steps, False)
    return row(naive, ours, np.array_equal(a_ours, a_naive), ratio_digits=1, n_envs=n_envs, steps=steps,
               context_length=agent.context_length, torch_threads=1, ms_per_step=round(1000 * ours / steps, 2),
               naive_ms_per_step=round(1000 * naive / steps, 2))


BENCHMARKS = {"atari_rollout_embed_once": lambda quick=False: _bench(quick)}

if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    print(_bench("--quick" in sys.argv))
