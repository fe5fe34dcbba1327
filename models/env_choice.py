"""An environment for an agent that names none (HF / CORL imports, uploads) or names one this machine cannot
make: which registered environments fit it, and a twin of the agent that acts in the chosen one.

The twin shares the agent's weights (nothing is copied, nothing of the original changes): a shared, cached
agent stays as it is for every other session.
"""
from __future__ import annotations

import copy
from dataclasses import replace

from .base import Agent
from .checkpoint import check_env
from .errors import AgentError

_KEY_ATTR = "_seqlens_content_key"


def candidates() -> list[str]:
    """Environments worth offering: seqlens' own, gymnasium's classic control and the MuJoCo tasks."""
    import envs

    classic = ["CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0"]
    ids = list(dict.fromkeys(classic + list(envs.ENV_ALIASES.values()) + list(envs.MUJOCO_TASKS.values())))
    return [e for e in ids if e in envs.registry]


def fitting_envs(agent: Agent) -> list[str]:
    """The candidate environments whose observation and action spaces fit the agent and that can be made here."""
    out = []
    for env_id in candidates():
        try:
            if not check_env(replace(agent.config, env_id=env_id), "agent"):
                out.append(env_id)
        except AgentError:
            continue
    return out


def with_env(agent: Agent, env_id: str, name: str = "the agent") -> Agent:
    """A twin of `agent` acting in env_id (weights shared, config its own); one sentence if it does not fit."""
    import envs

    try:
        env_id = envs.resolve_env_id(env_id)
    except ValueError:
        pass   # a gymnasium id: check_env says whether it is registered and fits
    config = replace(agent.config, env_id=env_id)
    try:
        notes = check_env(config, name)
    except AgentError as e:   # check_env speaks of a config.json; here the user chose the environment
        raise AgentError(str(e).replace("config.json's env_id", "the environment")) from None
    if notes:
        raise AgentError(notes[0])
    twin = copy.copy(agent)
    twin.__dict__["config"] = config
    twin.__dict__.pop(_KEY_ATTR, None)   # its content differs (the config): its key is computed anew
    twin.__dict__["notes"] = [n for n in getattr(agent, "notes", []) if "environment" not in n]
    return twin


def can_act(agent: Agent) -> bool:
    """Does the agent name an environment that can be made here?"""
    import envs

    if not agent.config.env_id:
        return False
    try:
        envs.env_spaces(agent.config.env_id)
    except Exception:  # noqa: BLE001 - refused, or not makeable here (a missing dependency)
        return False
    return True
