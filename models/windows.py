"""Model windows: the Dataset cut into fixed-length, left-padded context windows.

Training draws episodes uniformly, then ends the window at a uniformly drawn step of that episode
(left-padded near the start): drawn by length, short low-return episodes are under 1% of windows and a
return-conditioned model never learns to ask for a low return (docs/ARCHITECTURE.md, Conventions). Analyses use
`episode_windows`: every window of one episode at once, for one batched forward pass.

Shaped observations (images, grids, frame stacks: `Dataset.shaped`) are not normalised up front: that would copy the
whole array to float32 (7 GB of uint8 Atari frames become 28 GB). TrainingData keeps the raw array (a memory map stays a
memory map) and only the gathered windows become float32, through `obs_transform`: the agent's own (e.g. the DT
paper's x / 255, DTI's one-hot grid), else the agent's mean/std broadcast over the observation's shape (a mean of 0
and std of 255 is the DT paper's scale). Vector observations are normalised once, as always.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from trajectories import Dataset
from trajectories.digest import take_rows


@dataclass
class TrainingData:
    """A Dataset prepared once for fast window gathering: normalised observations, scaled returns-to-go."""

    dataset: Dataset
    obs: np.ndarray          # [N, obs_dim] float32, normalised with the agent's state mean/std; shaped data: the raw
    #                          [N, *obs_shape] array (uint8 / float32, maybe a memory map), turned by obs_transform
    actions: np.ndarray      # [N] int64 or [N, act_dim] float32
    rewards: np.ndarray      # [N] float32 (raw)
    rtg: np.ndarray          # [N] float32, returns-to-go divided by rtg_scale
    timesteps: np.ndarray    # [N] int64, clipped to max_ep_len - 1
    starts: np.ndarray       # [E] first step of each episode
    ends: np.ndarray         # [E] one past the last step
    obs_transform: Callable[[np.ndarray], np.ndarray] | None = None   # shaped data: raw [B, K, *shape] -> float32

    @classmethod
    def build(cls, ds: Dataset, state_mean, state_std, rtg_scale: float, max_ep_len: int,
              obs_transform: Callable[[np.ndarray], np.ndarray] | None = None) -> "TrainingData":
        """`obs_transform` (the agent's, shaped observations only): raw gathered observations [B, K, *obs_shape] in
        their stored dtype -> float32 of the same shape; None: (x - state_mean) / state_std, the statistics one
        value, or one per observation value (obs_dim of them, in the observation's C order)."""
        mean = np.asarray(state_mean, np.float32)
        std = np.maximum(np.asarray(state_std, np.float32), 1e-6)
        rtg, timesteps = (ds.returns_to_go / rtg_scale).astype(np.float32), clip_timesteps(ds.timesteps, max_ep_len)
        if ds.shaped:
            transform = obs_transform or standardise(mean, std, ds.obs_shape)
            return cls(ds, ds.observations, ds.actions, ds.rewards, rtg, timesteps, ds.episode_starts,
                       ds.episode_ends, transform)
        return cls(ds, (ds.observations - mean) / std, ds.actions, ds.rewards, rtg, timesteps,
                   ds.episode_starts, ds.episode_ends)


def standardise(mean: np.ndarray, std: np.ndarray, obs_shape: tuple) -> Callable[[np.ndarray], np.ndarray]:
    """(x - mean) / std over windows [..., *obs_shape], with mean/std one value or one per observation value."""
    def shaped(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, np.float32)
        if v.size == 1:
            return v.reshape(())
        if v.size != int(np.prod(obs_shape)):
            raise ValueError(f"the agent's state statistics have {v.size} values; observations of shape "
                             f"{'×'.join(map(str, obs_shape))} need one or {int(np.prod(obs_shape))}.")
        return v.reshape(obs_shape)

    m, s = shaped(mean), shaped(std)
    return lambda x: (x.astype(np.float32) - m) / s


def clip_timesteps(timesteps: np.ndarray, max_ep_len: int, warn: bool = True) -> np.ndarray:
    """Timesteps beyond the embedding table are clipped to its last row, never an index error."""
    timesteps = np.asarray(timesteps, np.int64)
    if warn and timesteps.size and timesteps.max() >= max_ep_len:
        warnings.warn(f"timestep {int(timesteps.max())} is beyond the model's max_ep_len {max_ep_len}; "
                      f"clipping to {max_ep_len - 1}.", stacklevel=2)
    return np.minimum(timesteps, max_ep_len - 1)


def gather_windows(data: TrainingData, episodes: np.ndarray, last_steps: np.ndarray, K: int,
                   distinct_frames: bool = False) -> dict[str, np.ndarray]:
    """Windows of K steps ending (inclusive) at absolute step `last_steps[i]` of episode `episodes[i]`.

    Returns arrays [B, K, ...]: obs ([B, K, obs_dim], or [B, K, *obs_shape] float32 for shaped data), actions, rewards, rtg, timesteps, and mask (1 = real step, 0 = left
    padding). Padded positions hold zeros (timestep 0).

    distinct_frames (shaped data): no obs windows; instead "frames" [D, *obs_shape] (each distinct frame once,
    transformed) and "frame_index" [B, K] into them (pads: -1), for a caller that embeds each frame once.
    """
    starts = data.starts[episodes]
    idx = last_steps[:, None] - np.arange(K - 1, -1, -1)[None, :]          # [B, K]
    mask = idx >= starts[:, None]
    idx = np.where(mask, idx, starts[:, None])
    if data.obs_transform is not None:   # shaped data: each distinct frame read and transformed once, then copied
        rows, inverse = np.unique(idx, return_inverse=True)   # into its windows (an episode's windows share K-1 of K)
        frames = np.asarray(data.obs_transform(take_rows(data.obs, rows)), np.float32)   # a map: read, not paged in
        if distinct_frames:
            obs = None
        else:
            obs = frames[inverse.reshape(idx.shape)]
            obs[~mask] = 0   # in place: a np.where copy of [B, K, 4, 84, 84] float32 windows doubled their peak
    else:
        obs = data.obs[idx]
    out = {"obs": obs, "actions": data.actions[idx], "rewards": data.rewards[idx], "rtg": data.rtg[idx],
           "timesteps": data.timesteps[idx], "mask": mask}
    if obs is None:
        del out["obs"]
        out["frames"], out["frame_index"] = frames, np.where(mask, inverse.reshape(idx.shape), -1)
    for key in ("actions", "rewards", "rtg", "timesteps") if data.obs_transform is not None else \
            ("obs", "actions", "rewards", "rtg", "timesteps"):
        arr = out[key]
        out[key] = np.where(mask.reshape(mask.shape + (1,) * (arr.ndim - 2)), arr, 0).astype(arr.dtype, copy=False)
    return out


def sample_windows(data: TrainingData, batch_size: int, K: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Episodes drawn uniformly, then the window's last step uniformly within the episode."""
    episodes = rng.integers(0, len(data.starts), size=batch_size)
    lengths = data.ends[episodes] - data.starts[episodes]
    last = data.starts[episodes] + (rng.random(batch_size) * lengths).astype(np.int64)
    return gather_windows(data, episodes, last, K)


def episode_windows(data: TrainingData, episode: int, K: int) -> dict[str, np.ndarray]:
    """Every window of an episode (one per step, [T, K, ...]) for a single batched forward pass."""
    steps = np.arange(data.starts[episode], data.ends[episode])
    return gather_windows(data, np.full(len(steps), episode), steps, K)
