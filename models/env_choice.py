"""An environment for an agent that names none (HF / CORL imports, uploads) or names one this machine cannot
make: which registered environments fit it, and a variant of the agent that acts in the chosen one.

The variant shares the agent's weights (nothing is copied, nothing of the original changes): a shared, cached
agent stays as it is for every other session.

Each variant records the choices that made it from the agent as loaded, in `input_choices(variant)` (the attribute
`input_choices`, never part of the config, so a saved variant does not carry them): "env" (with_env),
"normalize_from" (the label shown on the pages) and "normalize_path" (the dataset file, where known),
"raw_inputs" (without_normalization) and "rtg_scale". Bundles turn them into the `cli.py export` options that
make the same variant from the checkpoint (analysis/publish/export.input_flags).
"""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch

from .base import Agent
from .checkpoint import check_env
from .errors import AgentError

_KEY_ATTR = "_seqlens_content_key"
_CHOICES_ATTR = "input_choices"


def input_choices(agent) -> dict:
    """What made this variant from the agent as loaded (see the module docstring); {} for an agent as loaded."""
    return dict(getattr(agent, "__dict__", {}).get(_CHOICES_ATTR) or {})


def _record(variant, parent, drop=(), **choices) -> None:
    kept = {k: v for k, v in input_choices(parent).items() if k not in drop}
    variant.__dict__[_CHOICES_ATTR] = {**kept, **choices}


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
    """A variant of `agent` acting in env_id (weights shared, config its own); one sentence if it does not fit."""
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
    variant = copy.copy(agent)
    variant.__dict__["config"] = config
    variant.__dict__.pop(_KEY_ATTR, None)   # its content differs (the config): its key is computed anew
    variant.__dict__["notes"] = [n for n in getattr(agent, "notes", []) if "environment" not in n]
    _record(variant, agent, env=env_id)
    return variant


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


def dataset_statistics(dataset) -> tuple[list[float], list[float]]:
    """State mean and std as seqlens' (and HF's and CORL's) training code computes them: over every step of the
    dataset, a std under 1e-6 replaced by 1."""
    obs = dataset.observations   # float32, summed as numpy does: the numbers the training code stored
    std = obs.std(0)
    return obs.mean(0).astype(float).tolist(), np.where(std > 1e-6, std, 1.0).astype(float).tolist()


def with_inputs(agent: Agent, state_mean=None, state_std=None, rtg_scale: float | None = None,
                name: str = "the agent", source: str | None = None, path: str | None = None) -> Agent:
    """A variant of `agent` that normalises states with (state_mean, state_std) and/or scales returns-to-go by
    rtg_scale; the weights are shared and the original is untouched. `source` names where the statistics came
    from (shown on the pages), `path` the dataset file they were computed from (for remake commands)."""
    changes = {}
    if state_mean is not None or state_std is not None:
        mean, std = np.asarray(state_mean, np.float64), np.asarray(state_std, np.float64)
        if mean.shape != (agent.obs_dim,) or std.shape != (agent.obs_dim,):
            raise AgentError(f"{name}: the normalisation statistics have {mean.size} values but the agent reads "
                             f"{agent.obs_dim} observation features.")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise AgentError(f"{name}: the normalisation statistics must be finite, with positive standard deviations.")
        changes.update(state_mean=mean.tolist(), state_std=std.tolist(),
                       dataset={**agent.config.dataset, "normalized_from": source or "given statistics"})
    if rtg_scale is not None:
        if not (np.isfinite(rtg_scale) and rtg_scale > 0):
            raise AgentError(f"{name}: the return-to-go scale must be a positive finite number, got {rtg_scale}.")
        changes["rtg_scale"] = float(rtg_scale)
    if not changes:
        return agent
    variant = copy.copy(agent)
    variant.__dict__["config"] = replace(agent.config, **changes)
    variant.__dict__.pop(_KEY_ATTR, None)
    if "state_mean" in changes:   # the variant's own buffer table: the original's tensors stay as they are
        buffers = dict(agent._buffers)
        buffers["state_mean"] = torch.tensor(changes["state_mean"], dtype=torch.float32)
        buffers["state_std"] = torch.tensor(np.maximum(changes["state_std"], 1e-6), dtype=torch.float32)
        variant.__dict__["_buffers"] = buffers
    recorded = {}
    if "state_mean" in changes:
        recorded.update(normalize_from=source or "given statistics", normalize_path=str(path) if path else None)
    if "rtg_scale" in changes:
        recorded["rtg_scale"] = changes["rtg_scale"]
    _record(variant, agent, drop=("raw_inputs",) if "state_mean" in changes else (), **recorded)
    return variant


def without_normalization(agent: Agent) -> Agent:
    """A variant that reads raw observations (chosen explicitly by the user)."""
    variant = with_inputs(agent, np.zeros(agent.obs_dim), np.ones(agent.obs_dim), source="raw")
    variant.__dict__["config"] = replace(variant.config, state_mean=None, state_std=None)
    _record(variant, agent, drop=("normalize_from", "normalize_path"), raw_inputs=True)
    return variant


def normalization_label(agent: Agent) -> str:
    """What the pages say about the agent's inputs."""
    c = agent.config
    stats = c.dataset.get("normalized_from") if isinstance(c.dataset, dict) else None
    if stats == "raw":
        stats = None
    where = "none (raw observations)" if c.state_mean is None else (f"from {stats}" if stats else "stored with the agent")
    return f"state normalisation {where}; return-to-go scale {c.rtg_scale:g}"


def with_choices(agent: Agent, env: str | None = None, normalize_from=None, rtg_scale: float | None = None,
                 raw_inputs: bool = False, *, source: str | None = None, name: str | None = None) -> Agent:
    """The headless choices of `cli.py evaluate|export` (--env ID, --normalize-from DATA, --raw-inputs,
    --rtg-scale X) applied to `agent`: the agent acts in `env` (a D4RL name like hopper-medium-v2 works too);
    states are normalised with the dataset at `normalize_from`'s mean and std (what HF's and CORL's training code
    did; HF imports carry none), or used raw; returns-to-go are divided by rtg_scale. The same variants, in the same
    order, for Home's choices (ui.agents.agent_in_session calls this too), so a bundle's remake line gives the
    page's figure. normalize_from is a dataset file, or a loaded Dataset (Home's selection) labelled `source` (no
    file recorded); `name` is the agent's name in the sentences (default: the option that was given).
    One sentence (AgentError) for a contradiction or a choice the agent cannot take."""
    if normalize_from and raw_inputs:
        raise AgentError("--normalize-from and --raw-inputs contradict each other; give one of them.")
    if env:
        agent = with_env(agent, env, name=name or "--env")
    if raw_inputs:
        agent = without_normalization(agent)
    if normalize_from is not None and hasattr(normalize_from, "observations"):   # a loaded Dataset
        mean, std = dataset_statistics(normalize_from)
        agent = with_inputs(agent, mean, std, name=name or "--normalize-from", source=source)
    elif normalize_from:
        from pathlib import Path

        from trajectories import load_dataset

        mean, std = dataset_statistics(load_dataset(normalize_from))
        agent = with_inputs(agent, mean, std, name=name or "--normalize-from", source=source or Path(normalize_from).name,
                            path=normalize_from)
    if rtg_scale is not None:
        agent = with_inputs(agent, rtg_scale=rtg_scale, name=name or "--rtg-scale")
    return agent
