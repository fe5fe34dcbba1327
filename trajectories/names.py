"""Column / key spellings seen in the wild, so readers detect fields instead of assuming names."""
from __future__ import annotations

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
