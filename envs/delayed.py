"""Delayed-reward variants (issue 24, item 4; the DT paper's delayed-return experiment): the wrapped environment's
rewards are held back and paid, summed, on the episode's last step (terminated or truncated), 0 before. The
episode's return is unchanged; only when it is paid moves. Datasets made with trajectories.transforms.delayed_rewards
carry these ids, so an agent trained on delayed data is evaluated (and its return-to-go counted down) as it trained.
"""
from __future__ import annotations

import gymnasium as gym

# delayed id -> the environment whose rewards it delays (the delayed id is registered with the same step limit)
DELAYED = {"seqlens/DelayedCartPole-v1": "CartPole-v1", "seqlens/DelayedPendulum-v1": "Pendulum-v1",
           "seqlens/DelayedKeyToDoor-v0": "seqlens/KeyToDoor-v0", "seqlens/DelayedKeyToDoorCue-v0": "seqlens/KeyToDoorCue-v0"}


class DelayedReward(gym.Wrapper):
    """Rewards summed and paid on the step that ends the episode. Wraps an env made with its own time limit, so
    a truncation by the limit is seen here and the held-back sum is paid on it."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._held = 0.0

    def reset(self, **kwargs):
        self._held = 0.0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._held += float(reward)
        if terminated or truncated:
            reward, self._held = self._held, 0.0
        else:
            reward = 0.0
        return obs, reward, terminated, truncated, info


def delayed(base: str, render_mode: str | None = None) -> gym.Env:
    """The registered entry point: DelayedReward over gymnasium.make(base) (base: one of DELAYED's values)."""
    if base not in DELAYED.values():
        raise ValueError(f"no delayed-reward variant of {base!r} (expected one of {', '.join(DELAYED.values())}).")
    return DelayedReward(gym.make(base, render_mode=render_mode))
