"""Agents: Decision Transformer, Trajectory Transformer, MLP / GRU policies, a one-step dynamics model;
checkpoints (config.json + model.safetensors), training and evaluation.

Attributes load lazily so that `models.errors` (and the CLI) work without importing torch.
"""
from .errors import AgentError

_LAZY = {"Agent": "base", "AgentConfig": "base", "build_agent": "checkpoint", "load_agent": "checkpoint",
         "save_agent": "checkpoint"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")


__all__ = ["Agent", "AgentConfig", "AgentError", "build_agent", "load_agent", "save_agent"]
