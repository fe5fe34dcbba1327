"""What every agent reader shares (seqlens checkpoints, Hugging Face and CORL imports): the model class for a kind,
the meta-device build that checks a config's size before anything is allocated, bounded JSON reads, shard indexes
and exceptions as short clauses. Imports no reader, so each reader can import it."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from trajectories.limits import ENV, human_bytes, limits

from .base import Agent, AgentConfig
from .errors import AgentError


def agent_class(kind: str):
    # imported lazily: loading an MLP should not import the transformer code
    if kind == "dt":
        from .decision_transformer import DecisionTransformer
        return DecisionTransformer
    if kind == "tt":
        from .trajectory_transformer import TrajectoryTransformer
        return TrajectoryTransformer
    if kind == "q":
        from .q_network import QNetwork
        return QNetwork
    if kind == "drqn":
        from .drqn import DRQN
        return DRQN
    if kind == "cq":
        from .continuous_q import ContinuousQ
        return ContinuousQ
    from .baselines import DynamicsModel, GRUPolicy, MLPPolicy
    classes = {"mlp": MLPPolicy, "gru": GRUPolicy, "dynamics": DynamicsModel}
    if kind not in classes:
        raise AgentError(f"unknown agent kind '{kind}' (expected dt, tt, mlp, gru, dynamics, q, drqn or cq).")
    return classes[kind]


def capabilities_of(kind) -> frozenset:
    """What an agent of this on-disk kind can do (models.base.CAPABILITIES), from its class alone (nothing built):
    for callers that read a config.json without loading it. An unknown kind can do nothing."""
    try:
        return agent_class(kind).capabilities
    except AgentError:
        return frozenset()


def family_name(kind) -> str:
    """How pages name a model family to users ("a Decision Transformer"), from its class; the kind itself if unknown."""
    try:
        return agent_class(kind).family
    except AgentError:
        return str(kind)


def kinds_with(needs) -> list[str]:
    """The model families (on-disk kinds, in the registry's order) whose agents have every capability in `needs`:
    what a page that needs them names to its users."""
    from .config_check import KINDS

    return [k for k in KINDS if set(needs) <= capabilities_of(k)]


def build_meta(config: AgentConfig, name: str, cls=None) -> Agent:
    """The model a config describes, built on the meta device (no memory), its size checked against
    limits().agent_params. Any failure to build is one sentence."""
    cls = cls or agent_class(config.kind)
    try:
        with torch.device("meta"):
            meta = cls(replace(config, hparams=dict(config.hparams)))   # TT writes resolved hparams back
    except AgentError:
        raise
    except Exception as e:  # noqa: BLE001 - a stranger's config: any failure is one sentence
        raise AgentError(f"{name}: config.json cannot build a '{config.kind}' model ({short(e)}).") from None
    n = sum(p.numel() for p in meta.parameters()) + sum(b.numel() for b in meta.buffers())
    cap = limits().agent_params
    if n > cap:
        raise AgentError(f"{name}: config.json describes a '{config.kind}' model of {n:,} parameters, over the limit of "
                         f"{cap:,} (agent_params, set by {ENV['agent_params']}).")
    return meta


def read_json(path: Path, where: str):
    """A JSON file of an agent (config.json, a shard index), its size checked against limits().json_bytes first;
    any failure is an AgentError naming `where`."""
    size = path.stat().st_size
    cap = limits().json_bytes
    if size > cap:
        raise AgentError(f"{where} is {human_bytes(size)}, over the limit of {human_bytes(cap)} (json_bytes, set by {ENV['json_bytes']}).")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise AgentError(f"{where} is not valid JSON ({short(e)}).") from None


def shard_names(index, where: str) -> list[str]:
    """Sorted shard file names from a parsed index; each must be a plain *.safetensors file name."""
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise AgentError(f"{where} must hold a \"weight_map\" object from tensor names to shard file names.")
    shards = sorted(set(weight_map.values()))
    for s in shards:
        if "/" in s or "\\" in s or s in (".", "..") or not s.endswith(".safetensors"):
            raise AgentError(f"{where} names the shard {s[:60]!r}; expected a plain *.safetensors file name beside it.")
    return shards


def short(e: BaseException) -> str:
    """An exception as a short clause for inside a sentence: one line, no trailing period."""
    text = " ".join(str(e).split()) or type(e).__name__
    return (text if len(text) <= 160 else text[:157] + "...").rstrip(".")
