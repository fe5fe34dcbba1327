"""A D4RL-scale pair for `cli.py bench --scale`: a 1M-transition, 2,000-episode hopper-shaped HDF5 file and a
Decision Transformer of the public HF hopper size (state 11, action 3, hidden 128, 3 layers, 1 head,
max_ep_len 1000, K 20, RTG scale 1000, no state statistics), both seeded.

The data is not Hopper physics: smooth per-episode random walks whose reward level and length vary by
episode, so returns spread the way D4RL's medium-replay files do. What the benchmark measures (reading,
windows, forwards, projections, rollouts in Hopper-v5) depends on the sizes, not on the physics.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

N_STEPS, N_EPISODES, OBS_DIM, ACT_DIM, MAX_EP_LEN = 1_000_000, 2_000, 11, 3, 1000
HOPPER_DT = {"hidden": 128, "n_layer": 3, "n_head": 1, "n_inner": 512, "activation": "relu", "dropout": 0.1,
             "banded": False, "hf_wpe": True, "hf_import": "bench: public HF hopper size"}


def episode_lengths(n_steps: int, n_episodes: int, rng: np.random.Generator) -> np.ndarray:
    """n_episodes lengths in [20, 1000] summing to n_steps (D4RL hopper-medium: many short falls, some 1000s)."""
    raw = rng.uniform(0.02, 1.0, n_episodes)
    lengths = np.clip(np.round(raw / raw.sum() * n_steps), 20, MAX_EP_LEN).astype(np.int64)
    for _ in range(100):   # spread the rounding remainder over episodes that have room
        diff = n_steps - int(lengths.sum())
        if diff == 0:
            break
        room = np.flatnonzero(lengths < MAX_EP_LEN) if diff > 0 else np.flatnonzero(lengths > 20)
        idx = rng.choice(room, min(abs(diff), len(room)), replace=False)
        lengths[idx] += np.sign(diff)
    if int(lengths.sum()) != n_steps:
        raise ValueError(f"cannot split {n_steps} steps into {n_episodes} episodes of 20..{MAX_EP_LEN} steps.")
    return lengths


def make_dataset(n_steps: int = N_STEPS, n_episodes: int = N_EPISODES, seed: int = 0, env_id: str | None = "Hopper-v5"):
    from trajectories import Dataset

    rng = np.random.default_rng(seed)
    lengths = episode_lengths(n_steps, n_episodes, rng)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    obs = np.cumsum(rng.normal(0, 0.05, (n_steps, OBS_DIM)).astype(np.float32), axis=0)
    obs -= np.repeat(obs[starts], lengths, axis=0)   # each episode starts near 0, as after env.reset()
    obs += np.array([1.25, 0, 0, 0, 0, 2.5, 0, 0, 0, 0, 0], np.float32) + rng.normal(0, 0.01, (n_steps, OBS_DIM)).astype(np.float32)
    acts = np.tanh(rng.normal(0, 0.6, (n_steps, ACT_DIM))).astype(np.float32)
    level = np.repeat(rng.uniform(0.5, 3.5, n_episodes), lengths).astype(np.float32)
    rewards = (level + rng.normal(0, 0.1, n_steps)).astype(np.float32)
    ends = starts + lengths - 1
    term, trunc = np.zeros(n_steps, bool), np.zeros(n_steps, bool)
    fell = lengths < MAX_EP_LEN
    term[ends[fell]], trunc[ends[~fell]] = True, True
    return Dataset(obs, acts, rewards, term, trunc, starts, env_id=env_id)


def make_agent(seed: int = 0):
    import torch

    from models.base import AgentConfig
    from models.decision_transformer import DecisionTransformer

    torch.manual_seed(seed)
    cfg = AgentConfig(kind="dt", obs_dim=OBS_DIM, act_dim=ACT_DIM, discrete=False, context_length=20,
                      max_ep_len=MAX_EP_LEN, rtg_scale=1000.0, hparams=dict(HOPPER_DT),
                      action_low=[-1.0] * ACT_DIM, action_high=[1.0] * ACT_DIM)
    return DecisionTransformer(cfg).eval()


def write_pair(out_dir, n_steps: int = N_STEPS, n_episodes: int = N_EPISODES, seed: int = 0) -> tuple[Path, Path]:
    """hopper-medium-v2.hdf5 (the D4RL name, so the task is inferred from it) and an agent directory."""
    from models import save_agent
    from trajectories.d4rl_format import write_d4rl

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / "hopper-medium-v2.hdf5"
    write_d4rl(make_dataset(n_steps, n_episodes, seed, env_id=None), data)   # D4RL files carry no env id
    agent = save_agent(make_agent(seed), out_dir / "hopper-dt")
    return data, agent
