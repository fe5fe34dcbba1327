"""MiniGrid as DecisionTransformerInterpretability (DTI, jbloomAus/DecisionTransformerInterpretability) used it:
its Memory variants re-created from their definition (`src/environments/memory.py`, `registration.py`) and its
observation wrappers applied in its order (`src/environments/environments.py` `make_env`).

Observations stay MiniGrid's dict: `image` (view x view x 3 uint8 codes: object, colour, state; or view x view x 20
one-hot with `one_hot_obs`), `direction` (0..3: right, down, left, up) and `mission` (a string). DTI's models embed
the image alone (their `state_embedding` is over the flattened grid); direction and mission are kept as MiniGrid gives
them, untouched.

Registered ids (envs/__init__.py registers them by name when `envs` is imported, without importing minigrid):
- `MiniGrid-MemoryS7FixedStart-v0`: size 7, hallway end fixed, agent at (1, 3) facing right (direction 0);
- `MiniGrid-MemoryS7RandomDirection-v0`: size 7, a random direction and a random start column 1..4 (DTI's
  `random_start_pos` default, which this variant does not override).
Both give up to 1,000 steps (DTI's factories' `max_steps`). DTI's other registrations are not re-created: its
multi-env samplers (`DynamicObstaclesMultiEnv-v0`, ...) draw one of many envs per reset, `FetchObstacles*` and
`DynamicObstaclesRandGoal-v0` need DTI's own env classes or a patched minigrid, and `Probe*` are PPO probes, not
MiniGrid. DTI's MemoryDT and Dynamic-Obstacles agents name `MiniGrid-MemoryS7FixedStart-v0` and MiniGrid's own
`MiniGrid-Dynamic-Obstacles-8x8-v0`.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Ball, Key, Wall
from minigrid.minigrid_env import MiniGridEnv
from minigrid.wrappers import FullyObsWrapper, OneHotPartialObsWrapper

MISSION = "go to the matching object at the end of the hallway"
ACTION_LABELS = ["left", "right", "forward", "pickup", "drop", "toggle", "done"]
DTI_IDS = ("MiniGrid-MemoryS7FixedStart-v0", "MiniGrid-MemoryS7RandomDirection-v0")
ONE_HOT_BITS = len(OBJECT_TO_IDX) + len(COLOR_TO_IDX) + len(STATE_TO_IDX)   # 11 + 6 + 3 = 20


class DTIMemoryEnv(MiniGridEnv):
    """DTI's MemoryEnv: a start room holding a key or a ball, a hallway, and a split with one of each at its ends;
    reaching the cell beside the matching one gives MiniGrid's reward (1 - 0.9 * steps / max_steps), the other
    ends the episode with 0. Unlike MiniGrid's own MemoryEnv, pickup is not turned into toggle."""

    def __init__(self, size=8, random_length=False, random_direction=False, random_start_pos=True,
                 max_steps=None, **kwargs):
        self.size, self.random_length = size, random_length
        self.random_direction, self.random_start_pos = random_direction, random_start_pos
        super().__init__(mission_space=MissionSpace(mission_func=lambda: MISSION), width=size, height=size,
                         see_through_walls=False, max_steps=5 * size ** 2 if max_steps is None else max_steps, **kwargs)

    def _gen_grid(self, width, height):
        # the same calls, in the same order, as DTI's _gen_grid: the same seed gives the same layout
        self.grid = Grid(width, height)
        self.grid.horz_wall(0, 0)
        self.grid.horz_wall(0, height - 1)
        self.grid.vert_wall(0, 0)
        self.grid.vert_wall(width - 1, 0)
        upper, lower = height // 2 - 2, height // 2 + 2
        hallway_end = self._rand_int(4, width - 2) if self.random_length else width - 3
        for i in range(1, 5):                     # start room
            self.grid.set(i, upper, Wall())
            self.grid.set(i, lower, Wall())
        self.grid.set(4, upper + 1, Wall())
        self.grid.set(4, lower - 1, Wall())
        for i in range(5, hallway_end):           # horizontal hallway
            self.grid.set(i, upper + 1, Wall())
            self.grid.set(i, lower - 1, Wall())
        for j in range(0, height):                # vertical hallway
            if j != height // 2:
                self.grid.set(hallway_end, j, Wall())
            self.grid.set(hallway_end + 2, j, Wall())
        column = self._rand_int(1, hallway_end + 1) if self.random_start_pos else 1
        self.agent_pos = (column, height // 2)
        self.agent_dir = self._rand_int(0, 4) if self.random_direction else 0
        start_obj = self._rand_elem([Key, Ball])
        self.grid.set(1, height // 2 - 1, start_obj("green"))
        self.target_obj = start_obj().type
        others = self._rand_elem([[Ball, Key], [Key, Ball]])
        self.target_pos = "top" if others[0] == start_obj else "bottom"
        top, bottom = (hallway_end + 1, height // 2 - 2), (hallway_end + 1, height // 2 + 2)
        self.grid.set(*top, others[0]("green"))
        self.grid.set(*bottom, others[1]("green"))
        if start_obj == others[0]:
            self.success_pos, self.failure_pos = (top[0], top[1] + 1), (bottom[0], bottom[1] - 1)
        else:
            self.success_pos, self.failure_pos = (bottom[0], bottom[1] - 1), (top[0], top[1] + 1)
        self.mission = MISSION

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if tuple(self.agent_pos) == self.success_pos:
            reward, terminated = self._reward(), True
        if tuple(self.agent_pos) == self.failure_pos:
            reward, terminated = 0, True
        return obs, reward, terminated, truncated, info


def memory_fixed_start(render_mode="rgb_array", max_steps=1000):
    """DTI's `get_memory_env_fixed_start`."""
    return DTIMemoryEnv(size=7, random_length=False, random_direction=False, random_start_pos=False,
                        max_steps=max_steps, render_mode=render_mode)


def memory_random_direction(render_mode="rgb_array", max_steps=1000):
    """DTI's `get_memory_env_random_direction`."""
    return DTIMemoryEnv(size=7, random_length=False, random_direction=True, max_steps=max_steps,
                        render_mode=render_mode)


class ViewSizeWrapper(gym.ObservationWrapper):
    """DTI's ViewSizeWrapper: the image is the agent's view of another (odd) size; the rest of the dict kept."""

    def __init__(self, env, agent_view_size=7):
        super().__init__(env)
        if agent_view_size % 2 != 1 or agent_view_size < 3:
            raise ValueError(f"view_size must be odd and at least 3, got {agent_view_size}.")
        self.agent_view_size = agent_view_size
        channels = self.observation_space["image"].shape[2:]
        image = gym.spaces.Box(0, 255, (agent_view_size, agent_view_size, *channels), np.uint8)
        self.observation_space = gym.spaces.Dict({**self.observation_space.spaces, "image": image})

    def observation(self, obs):
        grid, vis_mask = self.unwrapped.gen_obs_grid(self.agent_view_size)
        return {**obs, "image": grid.encode(vis_mask)}


def make_dti_env(env_id: str, view_size: int = 7, one_hot_obs: bool = False, fully_observed: bool = False,
                 max_steps: int | None = None, render_mode: str | None = "rgb_array") -> gym.Env:
    """An environment wrapped as DTI's `make_env` wraps it from an EnvironmentConfig (env_id, view_size,
    one_hot_obs, fully_observed, max_steps): fully observed, then view size, then one-hot. The id goes through
    `envs.make` (registered ids only, never a module part)."""
    import envs

    if fully_observed and one_hot_obs:
        raise ValueError("fully_observed and one_hot_obs cannot both be set (DTI's make_env refuses the pair).")
    kwargs = {"render_mode": render_mode} if render_mode else {}
    if max_steps:
        kwargs["max_steps"] = int(max_steps)
    env = envs.make(env_id, **kwargs)
    if env_id.startswith("MiniGrid"):
        if fully_observed:
            env = FullyObsWrapper(env)
        if view_size != 7:
            env = ViewSizeWrapper(env, agent_view_size=view_size)
        if one_hot_obs:
            env = OneHotPartialObsWrapper(env)
    return env


def one_hot(image: np.ndarray) -> np.ndarray:
    """(..., 3) object/colour/state codes -> (..., 20) one-hot, the layout of minigrid's OneHotPartialObsWrapper."""
    image = np.asarray(image)
    out = np.zeros(image.shape[:-1] + (ONE_HOT_BITS,), np.uint8)
    offsets = (0, len(OBJECT_TO_IDX), len(OBJECT_TO_IDX) + len(COLOR_TO_IDX))
    for channel, offset in enumerate(offsets):
        np.put_along_axis(out, image[..., channel:channel + 1].astype(np.int64) + offset, 1, axis=-1)
    return out
