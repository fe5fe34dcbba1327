"""An environment for an agent that names none (HF / CORL imports, uploads) or names one this machine cannot
make: which registered environments fit it, and a variant of the agent that acts in the chosen one.

Environments come in families by what they observe: vectors (classic control, MuJoCo, seqlens' own), Atari frame
stacks (4x84x84, envs/atari.py) and MiniGrid views (v x v x 3 codes or 20 one-hot bits, envs/minigrid_dti.py). An
agent's family is its observation shape (`hparams.obs_shape`, else (obs_dim,)); it is offered only its family's
environments, and another family's id is refused with one sentence before anything is made.

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


VECTOR, ATARI, GRID = "vector", "Atari", "MiniGrid"
ATARI_SHAPE = (4, 84, 84)          # envs/atari.py's frame stack
GRID_CHANNELS = (3, 20)            # MiniGrid's object/colour/state codes, or DTI's one-hot of them
# grid environments worth offering: DTI's registered tasks and the MiniGrid task of its Dynamic-Obstacles agent
GRID_CANDIDATES = ("MiniGrid-MemoryS7FixedStart-v0", "MiniGrid-MemoryS7RandomDirection-v0",
                   "MiniGrid-Dynamic-Obstacles-8x8-v0", "DynamicObstaclesMultiEnv-v0", "CrossingMultiEnv-v0",
                   "MultiRoomMultiEnv-v0")


def observation_shape(agent: Agent) -> tuple[int, ...]:
    """The observation's own shape: the checkpoint's hparams `obs_shape` (image / grid agents), else (obs_dim,)."""
    shape = (agent.config.hparams or {}).get("obs_shape") if isinstance(agent.config.hparams, dict) else None
    return tuple(int(n) for n in shape) if shape else (int(agent.obs_dim),)


def agent_family(agent: Agent) -> str | None:
    """VECTOR, ATARI (4x84x84 frame stacks), GRID (a v x v MiniGrid view, 3 codes or 20 one-hot bits per cell),
    or None for a shape no environment here gives."""
    shape = observation_shape(agent)
    if len(shape) == 1:
        return VECTOR
    if shape == ATARI_SHAPE:
        return ATARI
    if len(shape) == 3 and shape[0] == shape[1] and shape[0] >= 3 and shape[0] % 2 and shape[2] in GRID_CHANNELS:
        return GRID
    return None


def env_family(env_id: str) -> str:
    """The family an id belongs to, from the id alone (nothing made, nothing imported)."""
    import envs

    if env_id.startswith(("seqlens/DTAtari-", "ALE/")):
        return ATARI
    return GRID if env_id.startswith("MiniGrid-") or env_id in envs.GRID_ENV_IDS else VECTOR


def grid_wrapping(agent: Agent) -> dict:
    """How a grid agent's environment is wrapped (envs.minigrid_dti.make_dti_env's view_size and one_hot_obs)."""
    shape = observation_shape(agent)
    return {"view_size": shape[0], "one_hot_obs": shape[2] == 20}


def _reads(agent: Agent, family: str | None) -> str:
    shape = observation_shape(agent)
    shown = "x".join(map(str, shape))
    return {VECTOR: f"vectors of {shape[0]} values", ATARI: f"{shown} Atari frame stacks",
            GRID: f"{shown} MiniGrid views"}.get(family, f"observations of shape {shown}")


def _offer(family: str | None) -> str:
    return {VECTOR: "so it can act only in an environment with vector observations (such as CartPole-v1)",
            ATARI: "so it can act only in an Atari environment (such as seqlens/DTAtari-Breakout-v0)",
            GRID: "so it can act only in a MiniGrid environment (such as MiniGrid-MemoryS7FixedStart-v0)"}.get(
        family, "which no environment seqlens makes gives")


def check_fits(agent: Agent, env_id: str, name: str = "the agent") -> list[str]:
    """Refuses (AgentError, one sentence) an environment of another family than the agent's observations, one
    seqlens will not make (envs.check_env_id: registered ids only, never a module part), or one whose spaces do not
    fit; returns notes (an environment not makeable here)."""
    import envs

    mine, theirs = agent_family(agent), env_family(str(env_id))
    if ":" in str(env_id) or mine == VECTOR and theirs == VECTOR:
        return check_env(replace(agent.config, env_id=env_id), name)   # the checks vector agents always had
    if mine != theirs:
        kind = {VECTOR: "an environment with vector observations", ATARI: "an Atari environment",
                GRID: "a MiniGrid environment"}[theirs]
        raise AgentError(f"{env_id} is {kind} but {name} reads {_reads(agent, mine)}, {_offer(mine)}.")
    try:
        obs_space, act_space = envs.env_spaces(env_id)
    except envs.EnvIdError as e:
        raise AgentError(f"{name}: {str(e)[0].lower()}{str(e)[1:]}") from None
    except Exception as e:  # noqa: BLE001 - registered, but not makeable here (a missing package)
        from .loading import short

        return [f"The environment {env_id} is not available here ({short(e)}), so the agent can be analysed offline but not evaluated."]
    from gymnasium import spaces

    image = obs_space["image"] if isinstance(obs_space, spaces.Dict) and "image" in obs_space.spaces else obs_space
    fits = isinstance(image, spaces.Box) and (tuple(image.shape) == ATARI_SHAPE if mine == ATARI
                                               else len(image.shape) == 3 and image.shape[2] == 3)
    if not fits:
        raise AgentError(f"{env_id} gives observations of shape {tuple(getattr(image, 'shape', ()))} but {name} reads "
                         f"{_reads(agent, mine)}.")
    n = int(act_space.n) if isinstance(act_space, spaces.Discrete) else None
    if not agent.config.discrete or n is None or int(agent.config.n_actions) > n:
        has = f"{n} discrete actions" if n is not None else f"a {type(act_space).__name__} action space"
        wants = f"{agent.config.n_actions} discrete actions" if agent.config.discrete else "continuous actions"
        raise AgentError(f"{env_id} has {has} but {name} chooses among {wants}.")
    return []


def candidates(agent: Agent | None = None) -> list[str]:
    """Environments worth offering an agent of this family: for vectors seqlens' own, gymnasium's classic control
    and the MuJoCo tasks; for Atari frame stacks the DT paper's four games; for MiniGrid views DTI's tasks."""
    import envs

    family = VECTOR if agent is None else agent_family(agent)
    if family == ATARI:
        return [f"seqlens/DTAtari-{game}-v0" for game in envs.ATARI_GAMES]
    if family == GRID:
        return list(GRID_CANDIDATES)   # MiniGrid's own ids are registered when first checked (envs.check_env_id)
    if family is None:
        return []
    classic = ["CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0"]
    ids = list(dict.fromkeys(classic + list(envs.ENV_ALIASES.values()) + list(envs.MUJOCO_TASKS.values())))
    return [e for e in ids if e in envs.registry]


def fitting_envs(agent: Agent) -> list[str]:
    """The candidate environments of the agent's family whose observation and action spaces fit it and that can
    be made here."""
    out = []
    for env_id in candidates(agent):
        try:
            if not check_fits(agent, env_id):
                out.append(env_id)
        except AgentError:
            continue
    return out


def with_env(agent: Agent, env_id: str, name: str = "the agent") -> Agent:
    """A variant of `agent` acting in env_id (weights shared, config its own); one sentence if it does not fit
    (another family's id included: an Atari id for a MiniGrid agent)."""
    import envs

    try:
        env_id = envs.resolve_env_id(env_id)
    except ValueError:
        pass   # a gymnasium id: check_fits says whether it is registered and fits
    config = replace(agent.config, env_id=env_id)
    try:
        notes = check_fits(agent, env_id, name)
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
    if dataset.shaped:   # frame stacks: numpy's std(0) would make float64 copies of the whole array (22 GB at 100k)
        return _blocked_statistics(dataset.flat_observations)
    obs = dataset.observations   # float32, summed as numpy does: the numbers the training code stored
    std = obs.std(0)
    return obs.mean(0).astype(float).tolist(), np.where(std > 1e-6, std, 1.0).astype(float).tolist()


def _blocked_statistics(obs, rows: int = 4_096) -> tuple[list[float], list[float]]:
    """Per-value mean and std (float64 sums) of [N, D] rows read a block at a time: memory D floats, not N x D."""
    n = len(obs)
    total = np.zeros(obs.shape[1])
    for i in range(0, n, rows):
        total += obs[i:i + rows].sum(0, dtype=np.float64)
    mean = total / n
    sq = np.zeros(obs.shape[1])
    for i in range(0, n, rows):
        sq += ((obs[i:i + rows] - mean) ** 2).sum(0)
    std = np.sqrt(sq / n)
    return mean.tolist(), np.where(std > 1e-6, std, 1.0).tolist()


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
