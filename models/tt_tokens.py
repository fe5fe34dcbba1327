"""Trajectory Transformer tokens: discounted values, a dataset's raw transitions and their token encoding.

A transition is D = obs_dim + act_dim + 2 numbers [obs..., act..., reward, value], each dimension quantized
into N quantile bins (models/discretizer.py; token = bin + dim * N). Values are discounted returns-to-go
V_t = sum_{k>=t} discount^(k-t) r_k within the episode. Everything is tokenized RAW (not normalised by state
mean/std): quantile bins do not care about scale, and decoded predictions come back in the units shown.
The model (models/trajectory_transformer.py) exposes these as methods with its own discretizer and dims.
"""
from __future__ import annotations

import numpy as np

from .discretizer import QuantileDiscretizer


def discounted_values(rewards: np.ndarray, starts: np.ndarray, ends: np.ndarray, discount: float) -> np.ndarray:
    """V_t = r_t + discount * V_{t+1} within each episode (0 past its end) [N] float64."""
    rewards = np.asarray(rewards, np.float64)
    out = np.zeros(len(rewards))
    lengths = np.asarray(ends) - np.asarray(starts)
    running = np.zeros(len(starts))
    for k in range(int(lengths.max()) if len(lengths) else 0):   # k steps back from every episode's end
        alive = lengths > k
        idx = np.asarray(ends)[alive] - 1 - k
        running[alive] = rewards[idx] + discount * running[alive]
        out[idx] = running[alive]
    return out


def dataset_transitions(dataset, discount: float) -> np.ndarray:
    """[N, obs_dim + act_dim + 2] raw [obs, act, reward, value] rows of a Dataset."""
    acts = dataset.actions.reshape(len(dataset.actions), -1).astype(np.float64)
    values = discounted_values(dataset.rewards, dataset.episode_starts, dataset.episode_ends, discount)
    return np.concatenate([dataset.observations, acts, dataset.rewards[:, None], values[:, None]], axis=1)


def encode_transitions(discretizer: QuantileDiscretizer, obs_dim: int, act_dim: int, observations, actions, rewards,
                       values=None) -> np.ndarray:
    """Raw arrays [T, ...] -> tokens [T, D]; unknown values (acting) get a placeholder the model ignores."""
    obs = np.asarray(observations, np.float64).reshape(-1, obs_dim)
    acts = np.asarray(actions, np.float64).reshape(len(obs), act_dim)
    rew = np.asarray(rewards, np.float64).reshape(len(obs), 1)
    val = np.zeros((len(obs), 1)) if values is None else np.asarray(values, np.float64).reshape(len(obs), 1)
    return discretizer.encode(np.concatenate([obs, acts, rew, val], axis=1))


def context_tokens(discretizer: QuantileDiscretizer, obs_dim: int, act_dim: int, observations, actions=None, rewards=None,
                   max_transitions: int | None = None) -> np.ndarray:
    """History obs [t+1, obs_dim] (the last is the current one), actions [t, act_dim], rewards [t]
    -> the token prefix [p * D + obs_dim] of the last p = min(t, max_transitions) transitions."""
    obs = np.asarray(observations, np.float64).reshape(-1, obs_dim)
    t = len(obs) - 1
    p = t if max_transitions is None else min(t, max_transitions)
    cur = discretizer.encode(obs[-1:], 0).reshape(-1)
    if p == 0:
        return cur
    if actions is None or rewards is None or len(actions) < t or len(rewards) < t:
        raise ValueError(f"{t + 1} observations need {t} actions and {t} rewards before them")
    past = encode_transitions(discretizer, obs_dim, act_dim, obs[t - p:t], np.asarray(actions)[t - p:t],
                              np.asarray(rewards)[t - p:t])
    return np.concatenate([past.reshape(-1), cur])


def tokenize(discretizer: QuantileDiscretizer, dataset, discount: float) -> np.ndarray:
    """Every step of a Dataset as tokens [N, D] (true discounted values)."""
    return discretizer.encode(dataset_transitions(dataset, discount))
