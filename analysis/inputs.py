"""Model inputs for analyses: a Dataset's episodes cut into an agent's context windows, ready for forward().

Every analysis of a Decision Transformer over logged data starts here, so windows are built one way
(models/windows.py: left-padded, absolute timesteps, the agent's own normalisation and RTG scale).
"""
from __future__ import annotations

import numpy as np
import torch

from models.evaluate import check_dataset
from models.windows import TrainingData, gather_windows


def training_data(agent, dataset) -> TrainingData:
    """The dataset normalised with the agent's statistics (checked to fit the agent first)."""
    check_dataset(agent, dataset)
    c = agent.config
    mean = c.state_mean if c.state_mean is not None else np.zeros(agent.obs_dim)
    std = c.state_std if c.state_std is not None else np.ones(agent.obs_dim)
    return TrainingData.build(dataset, mean, std, c.rtg_scale, c.max_ep_len)


def step_windows(agent, data: TrainingData, steps: np.ndarray, context: int | None = None,
                 rtg_shift: float = 0.0) -> dict[str, torch.Tensor]:
    """forward() kwargs for windows ending at absolute dataset steps `steps` [B] (one window per step).

    rtg_shift (raw return units) is added to every return-to-go token: the offline what-if of asking
    for more or less return along the logged trajectory."""
    steps = np.asarray(steps, np.int64)
    episodes = np.searchsorted(data.starts, steps, side="right") - 1
    w = gather_windows(data, episodes, steps, int(context or agent.context_length))
    if rtg_shift:
        w["rtg"] = np.where(w["mask"], w["rtg"] + np.float32(rtg_shift / agent.config.rtg_scale), 0).astype(np.float32)
    return agent.window_inputs(w)


def receptive_field(agent) -> int:
    """Steps of history a DT's action at t depends on while acting. A native (banded) DT sees K steps per
    layer, and each key was itself computed from K steps before it: n_layer * K in all (what its cached
    rollout computes). An HF import attends to its last K steps only (DecisionTransformer.receptive_field);
    other agents: their context length."""
    return int(getattr(agent, "receptive_field", agent.context_length))


def episode_steps(data: TrainingData, episode: int) -> np.ndarray:
    """Absolute step indices of one episode."""
    return np.arange(data.starts[episode], data.ends[episode])
