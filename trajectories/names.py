"""Column / key spellings seen in the wild, so readers detect fields instead of assuming names."""
from __future__ import annotations

import re

import numpy as np

ALIASES = {
    "observations": ("observations", "observation", "obs", "states", "state"),
    "actions": ("actions", "action", "acts", "act"),
    "rewards": ("rewards", "reward", "rews", "rew", "r"),
    "terminated": ("terminated", "terminations", "termination", "terminals", "terminal", "dones", "done", "is_terminal"),
    "truncated": ("truncated", "truncations", "truncation", "timeouts", "timeout", "time_limit", "timelimit"),
    "episode": ("episode", "episode_id", "episode_ids", "episode_idx", "episode_index", "episode_num", "ep", "ep_id",
                "trajectory", "trajectory_id", "traj", "traj_id"),
    "step": ("step", "steps", "t", "timestep", "timesteps", "time_step", "step_id", "step_idx", "step_index"),
    "episode_starts": ("episode_starts", "episode_start_indices"),
    "episode_lengths": ("episode_lengths", "episode_lens", "lengths"),
}
# Prefixes of per-feature columns (obs_0, observation_x, action_1, ...)
OBS_PREFIXES = ("observations", "observation", "obs", "states", "state")
ACT_PREFIXES = ("actions", "action", "acts", "act")


def first_present(lower_to_real: dict[str, str], candidates) -> str | None:
    """The first candidate (lower-case) present among the keys, else None."""
    for c in candidates:
        if c in lower_to_real:
            return c
    return None


def jsonable(obj):
    """json.dumps default= for numpy scalars and arrays in metadata."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


# D4RL and Minari name the MuJoCo tasks their datasets come from; gymnasium's current versions of them.
# The v5 environments keep v2's observation and action spaces (Hopper 11/3, HalfCheetah 17/6, Walker2d 17/6,
# Ant 27/8 with contact forces off), so a DT trained on D4RL data reads them as it read the old ones.
MUJOCO_TASKS = {
    "hopper": "Hopper-v5",
    "halfcheetah": "HalfCheetah-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
    "reacher": "Reacher-v5",
    "swimmer": "Swimmer-v5",
    "invertedpendulum": "InvertedPendulum-v5",
    "inverteddoublependulum": "InvertedDoublePendulum-v5",
}
_D4RL_NAME = re.compile(r"^(?:mujoco/)?([a-z0-9]+)[-/](?:random|medium|expert|medium-replay|medium-expert|full-replay|simple)"
                        r"(?:-v\d+)?$")


def dataset_env_id(name) -> str | None:
    """The gymnasium id of a D4RL or Minari dataset name ("hopper-medium-v2", "mujoco/hopper/expert-v0"), or
    None when the name is not one of those."""
    m = _D4RL_NAME.match(str(name).strip().lower())
    return MUJOCO_TASKS.get(m.group(1)) if m else None
