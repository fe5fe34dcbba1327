"""Environments beyond gymnasium's: velocity-masked CartPole / Pendulum and Key-to-Door; and the field's image / grid
environments: DTI's MiniGrid Memory variants (envs/minigrid_dti.py) and Atari as the DT paper preprocessed it
(envs/atari.py).

Importing this package registers them with gymnasium (once; importing again is a no-op), so
`gymnasium.make("seqlens/KeyToDoor-v0")` and `make_vec(...)` work anywhere after `import envs`. The image / grid ids
are registered by name: minigrid, ale-py and cv2 are imported only when one of them is made.

Environment ids may come from strangers (an uploaded agent's config.json, a dataset's metadata), and
gymnasium imports the module of an id written "module:Env". So seqlens makes environments only through
`envs.make` / `envs.make_vec`, which accept registered ids without a module part and refuse the rest.
"""
from __future__ import annotations

import gymnasium as gym
from gymnasium.envs.registration import register, registry

from trajectories.names import MUJOCO_TASKS, dataset_env_id

from .delayed import DELAYED
from .key_to_door import ACTION_LABELS as _KEYDOOR_ACTIONS
from .key_to_door import OBS_NAMES as _KEYDOOR_OBS
from .key_to_door_cue import OBS_NAMES as _KEYDOOR_CUE_OBS

ENV_ALIASES = {
    "cartpole": "CartPole-v1",
    "pendulum": "Pendulum-v1",
    "masked-cartpole": "seqlens/MaskedCartPole-v1",
    "masked-pendulum": "seqlens/MaskedPendulum-v1",
    "keydoor": "seqlens/KeyToDoor-v0",
    "reacher": "Reacher-v5",
}

_CARTPOLE_OBS = ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"]
_PENDULUM_OBS = ["cos_theta", "sin_theta", "angular_velocity"]
OBS_NAMES = {
    "CartPole-v1": _CARTPOLE_OBS,
    "Pendulum-v1": _PENDULUM_OBS,
    "seqlens/MaskedCartPole-v1": [_CARTPOLE_OBS[0], _CARTPOLE_OBS[2]],
    "seqlens/MaskedPendulum-v1": _PENDULUM_OBS[:2],
    "seqlens/KeyToDoor-v0": list(_KEYDOOR_OBS),
    "seqlens/KeyToDoorCue-v0": list(_KEYDOOR_CUE_OBS),
    # gymnasium's Reacher-v5 order (10 features: v5 dropped v4's always-zero fingertip-target z)
    "Reacher-v5": ["cos_shoulder", "cos_elbow", "sin_shoulder", "sin_elbow", "target_x", "target_y",
                   "shoulder_velocity", "elbow_velocity", "fingertip_minus_target_x", "fingertip_minus_target_y"],
}
# Dataset.act_names: one name per action dimension (a discrete action is one dimension)
ACT_NAMES = {
    "CartPole-v1": ["action"],
    "Pendulum-v1": ["torque"],
    "seqlens/MaskedCartPole-v1": ["action"],
    "seqlens/MaskedPendulum-v1": ["torque"],
    "seqlens/KeyToDoor-v0": ["action"],
    "seqlens/KeyToDoorCue-v0": ["action"],
    "Reacher-v5": ["shoulder_torque", "elbow_torque"],
}
# what each discrete action index means (discrete envs only), for axis labels
ACTION_LABELS = {
    "CartPole-v1": ["push_left", "push_right"],
    "seqlens/MaskedCartPole-v1": ["push_left", "push_right"],
    "seqlens/KeyToDoor-v0": list(_KEYDOOR_ACTIONS),
    "seqlens/KeyToDoorCue-v0": list(_KEYDOOR_ACTIONS),
}
# issue 24: delayed-reward variants (envs/delayed.py) observe and act as the environment they wrap
for _delayed_id, _base in DELAYED.items():
    for _table in (OBS_NAMES, ACT_NAMES, ACTION_LABELS):
        if _base in _table:
            _table[_delayed_id] = list(_table[_base])

# image / grid environments: not in ENV_ALIASES (that is the vector envs with shipped datasets)
ATARI_GAMES = ("Breakout", "Qbert", "Pong", "Seaquest")   # the DT paper's four games
IMAGE_ENV_ALIASES = {
    **{game.lower(): f"seqlens/DTAtari-{game}-v0" for game in ATARI_GAMES},
    "memory": "MiniGrid-MemoryS7FixedStart-v0",
    "memory-random-direction": "MiniGrid-MemoryS7RandomDirection-v0",
}
_MINIGRID_ACTIONS = ["left", "right", "forward", "pickup", "drop", "toggle", "done"]
# DTI's ids of MiniGrid tasks without the "MiniGrid-" prefix (its multi-env samplers)
GRID_ENV_IDS = ("DynamicObstaclesMultiEnv-v0", "CrossingMultiEnv-v0", "MultiRoomMultiEnv-v0")
ACTION_LABELS.update({
    "MiniGrid-MemoryS7FixedStart-v0": _MINIGRID_ACTIONS,
    "MiniGrid-MemoryS7RandomDirection-v0": _MINIGRID_ACTIONS,
    "CrossingMultiEnv-v0": _MINIGRID_ACTIONS,
    "MultiRoomMultiEnv-v0": _MINIGRID_ACTIONS,
    "DynamicObstaclesMultiEnv-v0": _MINIGRID_ACTIONS[:3],   # Dynamic-Obstacles: left, right, forward only
    # ale-py's minimal action sets (get_action_meanings(); tests/test_atari_env.py checks them)
    "seqlens/DTAtari-Breakout-v0": ["NOOP", "FIRE", "RIGHT", "LEFT"],
    "seqlens/DTAtari-Qbert-v0": ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN"],
    "seqlens/DTAtari-Pong-v0": ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"],
    "seqlens/DTAtari-Seaquest-v0": ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT",
                                    "DOWNLEFT", "UPFIRE", "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE",
                                    "UPLEFTFIRE", "DOWNRIGHTFIRE", "DOWNLEFTFIRE"],
})

_LIMITS = {"CartPole-v1": 500, "Pendulum-v1": 200, "seqlens/KeyToDoor-v0": 25, "seqlens/KeyToDoorCue-v0": 25}
_REGISTRATIONS = {
    "seqlens/MaskedCartPole-v1": dict(entry_point="envs.masked:MaskedCartPoleEnv", max_episode_steps=500,
                                      reward_threshold=475.0),
    "seqlens/MaskedPendulum-v1": dict(entry_point="envs.masked:MaskedPendulumEnv", max_episode_steps=200),
    # the env truncates itself when phase 3 runs out; the limit here only publishes the longest episode
    "seqlens/KeyToDoor-v0": dict(entry_point="envs.key_to_door:KeyToDoorEnv", max_episode_steps=7 + 8 + 10),
    "seqlens/KeyToDoorCue-v0": dict(entry_point="envs.key_to_door_cue:KeyToDoorCueEnv", max_episode_steps=7 + 8 + 10),
    # the wrapped env keeps its own limit (the wrapper must see the truncation to pay); the same limit is published
    **{d: dict(entry_point="envs.delayed:delayed", kwargs={"base": b}, max_episode_steps=_LIMITS[b])
       for d, b in DELAYED.items()},
    # DTI's ids (its registration.py), its factories re-created; they set max_steps themselves
    "MiniGrid-MemoryS7FixedStart-v0": dict(entry_point="envs.minigrid_dti:memory_fixed_start"),
    "MiniGrid-MemoryS7RandomDirection-v0": dict(entry_point="envs.minigrid_dti:memory_random_direction"),
    "DynamicObstaclesMultiEnv-v0": dict(entry_point="envs.minigrid_dti:dynamic_obstacles_multi"),
    "CrossingMultiEnv-v0": dict(entry_point="envs.minigrid_dti:crossing_multi"),
    "MultiRoomMultiEnv-v0": dict(entry_point="envs.minigrid_dti:multi_room_multi"),
    **{f"seqlens/DTAtari-{game}-v0": dict(entry_point="envs.atari:registered", kwargs={"game": game})
       for game in ATARI_GAMES},
}
# Families whose own ids a package of seqlens' requirements registers on import: a "MiniGrid-..." id not yet in
# the registry makes check_env_id import minigrid (then the id must be one of its own). The package is chosen here,
# by seqlens, for the whole family; nothing in an id names a module that gets imported.
_FAMILY_PACKAGES = (("MiniGrid-", "minigrid"), ("ALE/", "ale_py"))
for _env_id, _kwargs in _REGISTRATIONS.items():
    if _env_id not in registry:  # registering twice makes gymnasium warn about overriding
        register(id=_env_id, **_kwargs)


def resolve_env_id(name_or_id: str) -> str:
    """The gymnasium id for an alias ("keydoor"), an id ("seqlens/KeyToDoor-v0") or a D4RL / Minari dataset
    name ("hopper-medium-v2" -> "Hopper-v5")."""
    key = str(name_or_id).strip()
    if key.lower() in ENV_ALIASES:
        return ENV_ALIASES[key.lower()]
    if key in OBS_NAMES:
        return key
    if key.lower() in IMAGE_ENV_ALIASES:
        return IMAGE_ENV_ALIASES[key.lower()]
    if key in IMAGE_ENV_ALIASES.values():
        return key
    if dataset_env_id(key):
        return dataset_env_id(key)
    valid = ", ".join(f"{alias} ({env_id})" for alias, env_id in ENV_ALIASES.items())
    raise ValueError(f"Unknown environment {name_or_id!r}; expected one of: {valid}.")


class EnvIdError(ValueError, gym.error.Error):
    """An environment id seqlens will not hand to gymnasium; `str(err)` is one sentence."""


def check_env_id(env_id) -> str:
    """env_id itself if it is a registered gymnasium id without a module part, else EnvIdError.

    Never imports anything: "module:Env" ids (which make gymnasium import `module`) are refused, and an
    id must already be in gymnasium's registry (seqlens' own ids are, once this package is imported).
    """
    if not isinstance(env_id, str) or not env_id:
        raise EnvIdError(f"environment id {str(env_id)[:60]!r} is not a gymnasium environment id (expected a string such as 'CartPole-v1').")
    shown = env_id if len(env_id) <= 80 else env_id[:77] + "..."
    if ":" in env_id:
        raise EnvIdError(f"environment id {shown!r} names a module to import ({shown.split(':')[0]!r}); seqlens makes only "
                         "registered environments, written without a module part (such as 'CartPole-v1').")
    if env_id not in registry:
        _register_family(env_id)
    if env_id not in registry:
        raise EnvIdError(f"environment id {shown!r} is not registered with gymnasium here; seqlens makes only registered "
                         "environments (such as 'CartPole-v1' or 'seqlens/KeyToDoor-v0').")
    return env_id


def _register_family(env_id: str) -> None:
    import importlib

    for prefix, package in _FAMILY_PACKAGES:
        if env_id.startswith(prefix):
            try:
                importlib.import_module(package)   # registers the package's own ids (ale_py: gymnasium >= 1.0)
            except ImportError:
                return


def make(env_id, **kwargs):
    """gymnasium.make for a checked id (see check_env_id); the only way seqlens makes one environment."""
    return gym.make(check_env_id(env_id), **kwargs)


def make_vec(env_id, num_envs: int = 1, **kwargs):
    """gymnasium.make_vec for a checked id (see check_env_id)."""
    return gym.make_vec(check_env_id(env_id), num_envs=num_envs, **kwargs)


def env_spaces(env_id) -> tuple[gym.Space, gym.Space]:
    """(observation_space, action_space) of a checked id, from one environment made and closed again.

    EnvIdError for an id seqlens refuses; any other exception means the environment cannot be made here
    (a missing dependency such as mujoco), which callers may treat as "unavailable" rather than fatal.
    """
    check_env_id(env_id)
    if env_id not in _SPACES:
        env = gym.make(env_id)
        try:
            _SPACES[env_id] = (env.observation_space, env.action_space)
        finally:
            env.close()
    return _SPACES[env_id]


_SPACES: dict[str, tuple] = {}

__all__ = ["ATARI_GAMES", "GRID_ENV_IDS", "IMAGE_ENV_ALIASES", "ENV_ALIASES", "MUJOCO_TASKS", "dataset_env_id", "OBS_NAMES", "ACT_NAMES", "ACTION_LABELS", "EnvIdError", "check_env_id", "env_spaces",
           "make", "make_vec", "resolve_env_id"]
