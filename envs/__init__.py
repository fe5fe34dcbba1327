"""Environments beyond gymnasium's: velocity-masked CartPole / Pendulum and Key-to-Door.

Importing this package registers them with gymnasium (once; importing again is a no-op), so
`gymnasium.make("seqlens/KeyToDoor-v0")` and `make_vec(...)` work anywhere after `import envs`.
"""
from __future__ import annotations

from gymnasium.envs.registration import register, registry

from .key_to_door import ACTION_LABELS as _KEYDOOR_ACTIONS
from .key_to_door import OBS_NAMES as _KEYDOOR_OBS

ENV_ALIASES = {
    "cartpole": "CartPole-v1",
    "pendulum": "Pendulum-v1",
    "masked-cartpole": "seqlens/MaskedCartPole-v1",
    "masked-pendulum": "seqlens/MaskedPendulum-v1",
    "keydoor": "seqlens/KeyToDoor-v0",
}

_CARTPOLE_OBS = ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"]
_PENDULUM_OBS = ["cos_theta", "sin_theta", "angular_velocity"]
OBS_NAMES = {
    "CartPole-v1": _CARTPOLE_OBS,
    "Pendulum-v1": _PENDULUM_OBS,
    "seqlens/MaskedCartPole-v1": [_CARTPOLE_OBS[0], _CARTPOLE_OBS[2]],
    "seqlens/MaskedPendulum-v1": _PENDULUM_OBS[:2],
    "seqlens/KeyToDoor-v0": list(_KEYDOOR_OBS),
}
# Dataset.act_names: one name per action dimension (a discrete action is one dimension)
ACT_NAMES = {
    "CartPole-v1": ["action"],
    "Pendulum-v1": ["torque"],
    "seqlens/MaskedCartPole-v1": ["action"],
    "seqlens/MaskedPendulum-v1": ["torque"],
    "seqlens/KeyToDoor-v0": ["action"],
}
# what each discrete action index means (discrete envs only), for axis labels
ACTION_LABELS = {
    "CartPole-v1": ["push_left", "push_right"],
    "seqlens/MaskedCartPole-v1": ["push_left", "push_right"],
    "seqlens/KeyToDoor-v0": list(_KEYDOOR_ACTIONS),
}

_REGISTRATIONS = {
    "seqlens/MaskedCartPole-v1": dict(entry_point="envs.masked:MaskedCartPoleEnv", max_episode_steps=500,
                                      reward_threshold=475.0),
    "seqlens/MaskedPendulum-v1": dict(entry_point="envs.masked:MaskedPendulumEnv", max_episode_steps=200),
    # the env truncates itself when phase 3 runs out; the limit here only publishes the longest episode
    "seqlens/KeyToDoor-v0": dict(entry_point="envs.key_to_door:KeyToDoorEnv", max_episode_steps=7 + 8 + 10),
}
for _env_id, _kwargs in _REGISTRATIONS.items():
    if _env_id not in registry:  # registering twice makes gymnasium warn about overriding
        register(id=_env_id, **_kwargs)


def resolve_env_id(name_or_id: str) -> str:
    """The gymnasium id for an alias ("keydoor") or an id ("seqlens/KeyToDoor-v0")."""
    key = str(name_or_id).strip()
    if key.lower() in ENV_ALIASES:
        return ENV_ALIASES[key.lower()]
    if key in OBS_NAMES:
        return key
    valid = ", ".join(f"{alias} ({env_id})" for alias, env_id in ENV_ALIASES.items())
    raise ValueError(f"Unknown environment {name_or_id!r}; expected one of: {valid}.")


__all__ = ["ENV_ALIASES", "OBS_NAMES", "ACT_NAMES", "ACTION_LABELS", "resolve_env_id"]
