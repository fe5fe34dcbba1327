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
- `DynamicObstaclesMultiEnv-v0`, `CrossingMultiEnv-v0`, `MultiRoomMultiEnv-v0`: DTI's MultiEnvSampler over its lists
  of MiniGrid envs (Dynamic-Obstacles 6x6 without obstacles and 6..9 with 5..6; Crossing 5..13 odd with 0..6
  crossings of lava, then of walls; MultiRoom 1..4 rooms of up to 5..9 cells), one drawn per reset.
All give up to 1,000 steps (DTI's factories' `max_steps`). Not re-created: `FetchObstacles*` (DTI's own env class,
not in the sources read) and `DynamicObstaclesRandGoal-v0` (a `rand_goal` argument minigrid's DynamicObstaclesEnv
does not have), and `Probe*` (PPO probes, not MiniGrid). DTI's MemoryDT and Dynamic-Obstacles agents name `MiniGrid-MemoryS7FixedStart-v0` and MiniGrid's own
`MiniGrid-Dynamic-Obstacles-8x8-v0`.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Ball, Key, Lava, Wall
from minigrid.envs import CrossingEnv, DynamicObstaclesEnv, MultiRoomEnv
from minigrid.minigrid_env import MiniGridEnv
from minigrid.wrappers import FullyObsWrapper, OneHotPartialObsWrapper

MISSION = "go to the matching object at the end of the hallway"
ACTION_LABELS = ["left", "right", "forward", "pickup", "drop", "toggle", "done"]
DTI_IDS = ("MiniGrid-MemoryS7FixedStart-v0", "MiniGrid-MemoryS7RandomDirection-v0", "DynamicObstaclesMultiEnv-v0",
           "CrossingMultiEnv-v0", "MultiRoomMultiEnv-v0")
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


class _AnyMission(MissionSpace):
    """The missions of several MiniGrid envs: contains what any of them contains; samples the first's."""

    def __init__(self, spaces):
        super().__init__(mission_func=spaces[0].mission_func, ordered_placeholders=spaces[0].ordered_placeholders)
        self.spaces = list(spaces)

    def contains(self, x) -> bool:
        return any(space.contains(x) for space in self.spaces)


class MultiEnvSampler(gym.Env):
    """DTI's MultiEnvSampler: each reset draws one of `envs` (with probabilities p, uniform by default) and the
    episode plays in it; spaces must agree (mission spaces are made the first env's, as DTI does).

    Two deliberate differences: DTI seeds numpy's global RNG at reset and resets the drawn env unseeded; here the
    sampler's own seeded `np_random` draws both the env and a seed for it, so `reset(seed=s)` gives one episode and
    nothing global changes. And DTI's sampler declares the first env's mission space, which does not contain the
    others' missions (Crossing's wall missions under its lava one): here the mission space contains any of them."""
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, envs, p=None, render_mode="rgb_array"):
        if len(envs) < 2:
            raise ValueError("MultiEnvSampler needs at least two environments.")
        self.envs = list(envs)
        self.p = np.full(len(self.envs), 1 / len(self.envs)) if p is None else np.asarray(p, float)
        if self.p.shape != (len(self.envs),):
            raise ValueError(f"p has {self.p.size} probabilities for {len(self.envs)} environments.")
        first = self.envs[0]
        for env in self.envs[1:]:
            same = all(env.observation_space[k] == first.observation_space[k] for k in ("image", "direction"))
            if not same or env.action_space != first.action_space:
                raise ValueError("the environments' observation and action spaces differ.")
        missions = _AnyMission([env.observation_space["mission"] for env in self.envs])
        self.observation_space = gym.spaces.Dict({**first.observation_space.spaces, "mission": missions})
        self.action_space = first.action_space
        self.render_mode, self.env_index = render_mode, 0

    @property
    def current(self) -> MiniGridEnv:
        return self.envs[self.env_index]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.env_index = int(self.np_random.choice(len(self.envs), p=self.p))
        return self.current.reset(seed=int(self.np_random.integers(2 ** 31)), options=options)

    def step(self, action):
        return self.current.step(action)

    def render(self):
        return self.current.render()

    def close(self):
        for env in self.envs:
            env.close()


def dynamic_obstacles_multi(render_mode="rgb_array", max_steps=1000):
    """DTI's `get_dynamic_obstacles_multi_env`: 6x6 without obstacles, then sizes 6..9 with 5 and 6 obstacles."""
    sizes = [(6, 0)] + [(size, n) for size in range(6, 10) for n in range(5, 7)]
    return MultiEnvSampler([DynamicObstaclesEnv(size=size, n_obstacles=n, agent_start_pos=None, render_mode=render_mode,
                                                max_steps=max_steps) for size, n in sizes])


def crossing_multi(render_mode="rgb_array", max_steps=1000):
    """DTI's `get_crossing_multi_env`: sizes 5..13 (odd) x 0..6 crossings, of lava then of walls."""
    return MultiEnvSampler([CrossingEnv(size=size, num_crossings=n, obstacle_type=kind, render_mode=render_mode,
                                        max_steps=max_steps)
                            for kind in (Lava, Wall) for size in range(5, 14, 2) for n in range(0, 7)])


def multi_room_multi(render_mode="rgb_array", max_steps=1000):
    """DTI's `get_multi_room_env`: 1..4 to min..4 rooms of at most 5..9 cells."""
    return MultiEnvSampler([MultiRoomEnv(minNumRooms=lo, maxNumRooms=hi, maxRoomSize=size, render_mode=render_mode,
                                         max_steps=max_steps)
                            for lo in range(1, 5) for hi in range(lo, 5) for size in range(5, 10)])


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
    if env_id.startswith("MiniGrid") or env_id in DTI_IDS:
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
