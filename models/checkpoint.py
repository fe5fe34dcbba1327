"""Checkpoints: a directory with config.json + model.safetensors (or a .zip of one). Never pickle.

Also reads a Hugging Face `DecisionTransformerModel.save_pretrained` directory (see hf_import.py).
"""
from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from trajectories.safe_zip import open_checked

from .base import Agent, AgentConfig
from .errors import PICKLE_SUFFIXES, AgentError

FORMAT = "seqlens-agent"
MAX_ZIP_BYTES = 1 << 30


def agent_class(kind: str):
    # imported lazily: loading an MLP should not import the transformer code
    if kind == "dt":
        from .decision_transformer import DecisionTransformer
        return DecisionTransformer
    if kind == "tt":
        from .trajectory_transformer import TrajectoryTransformer
        return TrajectoryTransformer
    from .baselines import DynamicsModel, GRUPolicy, MLPPolicy
    classes = {"mlp": MLPPolicy, "gru": GRUPolicy, "dynamics": DynamicsModel}
    if kind not in classes:
        raise AgentError(f"unknown agent kind '{kind}' (expected dt, tt, mlp, gru or dynamics).")
    return classes[kind]


def build_agent(config: AgentConfig) -> Agent:
    return agent_class(config.kind)(config)


def save_agent(agent: Agent, directory) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in agent.state_dict().items()}
    save_file(state, directory / "model.safetensors", metadata={"format": FORMAT, "kind": agent.kind})
    (directory / "config.json").write_text(json.dumps({"format": FORMAT, **agent.config.to_dict()}, indent=2) + "\n")
    return directory


def load_agent(path, context_length: int | None = None, rtg_scale: float | None = None,
               display_name: str | None = None) -> Agent:
    """A seqlens checkpoint directory, a .zip of one, or a Hugging Face Decision Transformer directory.

    context_length / rtg_scale apply to Hugging Face imports, whose config lacks them (defaults in
    hf_import.py). Every failure is an AgentError with one sentence.
    """
    path = Path(path)
    name = display_name or path.name
    if not path.exists():
        raise AgentError(f"{name} does not exist.")
    if path.suffix.lower() in PICKLE_SUFFIXES and path.is_file():
        raise AgentError(f"{name} is a pickle-based checkpoint ({path.suffix}); seqlens never unpickles files, "
                         "which can run code: save the agent as config.json + model.safetensors instead.")
    if path.is_file() and path.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory() as tmp:
            return load_agent(_extract_zip(path, Path(tmp), name), context_length, rtg_scale, display_name=name)
    if not path.is_dir():
        raise AgentError(f"{name} is not an agent: expected a directory with config.json and model.safetensors, or a .zip of one.")
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise AgentError(f"{name} has no config.json (an agent directory holds config.json and model.safetensors).")
    try:
        raw = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AgentError(f"{name}: config.json is not valid JSON ({e}).") from None
    if not isinstance(raw, dict):
        raise AgentError(f"{name}: config.json must hold a JSON object.")
    weights = path / "model.safetensors"
    if not weights.is_file():
        pickles = [p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
        hint = f" (found {', '.join(pickles)}, a pickle format seqlens refuses to load)" if pickles else ""
        raise AgentError(f"{name} has no model.safetensors{hint}.")
    if raw.get("model_type") == "decision_transformer":
        from .hf_import import load_hf_decision_transformer

        try:
            return load_hf_decision_transformer(path, **{k: v for k, v in (("context_length", context_length), ("rtg_scale", rtg_scale)) if v is not None})
        except AgentError:
            raise
        except (ValueError, KeyError, SafetensorError, OSError) as e:
            raise AgentError(f"{name}: {e}") from None
    if raw.pop("format", None) != FORMAT:
        raise AgentError(f"{name}: config.json is neither a seqlens agent (\"format\": \"{FORMAT}\") nor a Hugging Face Decision Transformer (\"model_type\": \"decision_transformer\").")
    try:
        config = AgentConfig.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise AgentError(f"{name}: config.json does not describe an agent ({e}).") from None
    try:
        agent = build_agent(config)
    except AgentError:
        raise
    except (TypeError, ValueError, KeyError) as e:
        raise AgentError(f"{name}: the config cannot build a '{config.kind}' model ({e}).") from None
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as e:
        raise AgentError(f"{name}: model.safetensors is not a readable safetensors file ({e}).") from None
    _check_state(agent, state, name)
    agent.load_state_dict(state)
    agent.eval()
    return agent


def _check_state(agent: Agent, state: dict, name: str) -> None:
    expected = agent.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise AgentError(f"{name}: model.safetensors is missing {', '.join(missing[:3])}{more} for a '{agent.kind}' model with this config.")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise AgentError(f"{name}: model.safetensors has tensors this '{agent.kind}' config does not use ({', '.join(unexpected[:3])}); the config and weights disagree.")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise AgentError(f"{name}: {key} has shape {tuple(state[key].shape)} in model.safetensors but the config implies {tuple(tensor.shape)}; the config and weights disagree.")


def _extract_zip(path: Path, dest: Path, name: str) -> Path:
    zf, members = open_checked(path, name, MAX_ZIP_BYTES, AgentError)
    with zf:
        configs = sorted((m.filename for m in members if PurePosixPath(m.filename).name == "config.json"), key=len)
        if not configs:
            raise AgentError(f"{name} holds no config.json (expected a zipped agent directory).")
        try:
            zf.extractall(dest)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise AgentError(f"{name} is a damaged zip file ({e}).") from None
    return dest / PurePosixPath(configs[0]).parent
