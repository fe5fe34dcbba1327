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


# ---- the Atari pair (issue 23 item 6) -------------------------------------------------------------------------
ATARI_ENV, ATARI_STEPS = "seqlens/DTAtari-Breakout-v0", 100_000
ATARI_DT = {"n_embd": 128, "n_layer": 6, "n_head": 8, "context_length": 30, "block_size": 90}   # the DT paper's Atari GPT
ATARI_ROWS = 2_048   # frame stacks written a block at a time (58 MB): the whole array is never in memory


def atari_episodes(n_real: int, seed: int = 0):
    """Real DTAtari-Breakout frame stacks (the DT paper's preprocessing) under a random policy that presses FIRE 30% of
    the time: yields whole episodes (obs uint8 [T, 4, 84, 84], actions int64 [T], rewards float32 [T], terminated) until
    at least n_real steps were played."""
    from envs.atari import make_atari

    env, rng, played = make_atari(ATARI_ENV, render_mode=None), np.random.default_rng(seed), 0
    while played < n_real:
        o, _ = env.reset(seed=int(rng.integers(1 << 31)))
        obs, acts, rews = [], [], []
        while True:
            a = 1 if rng.random() < 0.3 else int(rng.integers(4))
            obs.append(o)
            o, r, term, trunc, _ = env.step(a)
            acts.append(a)
            rews.append(r)
            if term or trunc:
                break
        played += len(acts)
        yield np.stack(obs), np.asarray(acts, np.int64), np.asarray(rews, np.float32), bool(term)
    env.close()


def write_atari_dataset(path, n_steps: int = ATARI_STEPS, n_real: int | None = None, seed: int = 0) -> dict:
    """An HDF5 file in the D4RL layout whose observations (uint8 [n_steps, 4, 84, 84], contiguous: the reader maps
    them) are real Breakout frame stacks: `n_real` steps played (default all n_steps), their episodes repeated in order
    until n_steps are written (the last one cut short, marked a timeout). Returns {real_steps, episodes, max_len}."""
    import h5py

    n_real = n_steps if n_real is None else min(n_real, n_steps)
    played = list(atari_episodes(n_real, seed)) if n_real < n_steps else None
    source = iter(played) if played is not None else atari_episodes(n_steps, seed)
    acts, rews, term, trunc = (np.zeros(n_steps, np.int64), np.zeros(n_steps, np.float32), np.zeros(n_steps, bool),
                               np.zeros(n_steps, bool))
    written, episodes, max_len, real = 0, 0, 0, 0
    with h5py.File(path, "w") as f:
        out = f.create_dataset("observations", shape=(n_steps, 4, 84, 84), dtype=np.uint8)   # contiguous, unfiltered
        while written < n_steps:
            try:
                o, a, r, done = next(source)
            except StopIteration:   # the real episodes again, in the same order
                source = iter(played)
                o, a, r, done = next(source)
            if played is None:
                real += len(a)
            T = min(len(a), n_steps - written)
            for i in range(0, T, ATARI_ROWS):
                out[written + i:written + min(T, i + ATARI_ROWS)] = o[i:min(T, i + ATARI_ROWS)]
            s = slice(written, written + T)
            acts[s], rews[s] = a[:T], r[:T]
            term[written + T - 1], trunc[written + T - 1] = done and T == len(a), not (done and T == len(a))
            written, episodes, max_len = written + T, episodes + 1, max(max_len, T)
        f["actions"], f["rewards"], f["terminals"], f["timeouts"] = acts, rews, term, trunc
        f.attrs["env_id"] = ATARI_ENV
    return {"real_steps": real if played is None else sum(len(e[1]) for e in played), "episodes": episodes,
            "max_len": max_len}


def make_atari_agent(max_timestep: int, seed: int = 0):
    """A DT of the DT paper's Atari size (6 layers, 8 heads, 128 dims, the conv state encoder over 4x84x84, K 30),
    randomly initialised (the benchmark times the work, which does not depend on the weights)."""
    import torch

    from models.decision_transformer import DecisionTransformer
    from models.dt_atari_agent import atari_config

    torch.manual_seed(seed)
    cfg = {**ATARI_DT, "vocab_size": 4, "max_timestep": int(max_timestep)}
    return DecisionTransformer(atari_config(cfg, "bench: DT paper Atari size, random init")).eval()


def write_atari_pair(out_dir, n_steps: int = ATARI_STEPS, n_real: int | None = None, seed: int = 0) -> tuple[Path, Path, dict]:
    """breakout-random.hdf5, an agent directory and the facts for the rows' note."""
    from models import save_agent

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / "breakout-random.hdf5"
    facts = write_atari_dataset(data, n_steps, n_real, seed)
    agent = save_agent(make_atari_agent(max(1000, facts["max_len"]), seed), out_dir / "breakout-dt")
    return data, agent, facts
