"""Velocity-masked classic-control tasks: POMDPs that a Markov policy cannot solve.

Dropping the velocities leaves positions only, so the controller must infer velocity from the
history (a memory model can; a one-step MLP cannot). The underlying `state` stays the full one,
which lets scripted behaviour policies act well while the dataset records the masked observation.
"""
from __future__ import annotations

import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.pendulum import PendulumEnv


class _Masked:
    """Mixin: keep only the observation features at `KEEP`; dynamics and rendering are the base env's."""

    KEEP: tuple[int, ...] = ()

    def _mask_space(self) -> None:
        full = self.observation_space
        keep = list(self.KEEP)
        self.observation_space = spaces.Box(full.low[keep], full.high[keep], dtype=np.float32)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs[list(self.KEEP)], reward, terminated, truncated, info

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        return obs[list(self.KEEP)], info


class MaskedCartPoleEnv(_Masked, CartPoleEnv):
    """CartPole observing cart position and pole angle only (full-state indices 0 and 2)."""

    KEEP = (0, 2)

    def __init__(self, render_mode: str | None = None, **kwargs):
        super().__init__(render_mode=render_mode, **kwargs)
        self._mask_space()


class MaskedPendulumEnv(_Masked, PendulumEnv):
    """Pendulum observing cos(theta) and sin(theta) only (no angular velocity)."""

    KEEP = (0, 1)

    def __init__(self, render_mode: str | None = None, **kwargs):
        super().__init__(render_mode=render_mode, **kwargs)
        self._mask_space()
