"""Every exportable figure by name: `cli.py export --figure NAME`, the pages' bundles and the report share it.

An entry is a function (agent, dataset, **params) -> Figured: it runs its analysis and draws its figure,
and carries the data behind the figure (CSV export) and the parameters that remake it (bundle manifest).
The entries live in analysis/entries/ (one module per topic; the analysis modules themselves only compute and
return results) and register with `@register`; `figures()` imports them all.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd
import plotly.graph_objects as go

# the entries package (analysis/entries/, one module per topic), each imported once, on first use
MODULES = ["analysis.entries.dataset", "analysis.entries.attention", "analysis.entries.sweeps", "analysis.entries.predictions",
           "analysis.entries.embeddings", "analysis.entries.context", "analysis.entries.attribution", "analysis.entries.comparisons",
           "analysis.entries.causal", "analysis.entries.ablation", "analysis.entries.video"]


@dataclass
class Figured:
    """A figure with the data behind it and what made it."""

    name: str
    figure: go.Figure
    data: pd.DataFrame
    params: dict = field(default_factory=dict)
    video: object = None      # an animated figure's analysis.video.EpisodeClip (written as gif / mp4); None: a still


@dataclass
class Entry:
    name: str
    description: str
    needs_agent: bool
    make: Callable[..., Figured]
    compare: object = None   # how compare mode pairs two agents' figures: analysis.compare.Spec or its mode name
    formats: tuple = ()      # the only formats it is written in (episode_video: gif, mp4); (): a still figure's
    rolls_out: bool = False  # with no dataset it rolls the agent out in its environment (the CLI passes none)


_REGISTRY: dict[str, Entry] = {}


def register(name: str, description: str, needs_agent: bool = True, compare=None, formats: tuple = (),
             rolls_out: bool = False):
    """Decorator: make(agent, dataset, **params) -> Figured. Params need defaults (the CLI passes none).
    compare: "difference" (A | B | B − A), "side" (A | B) or "overlay" (B on A's axes), or an analysis.compare.Spec;
    None: analysis.compare's table, else side by side. formats: an animation's own formats (gif, mp4), the only ones
    it is written in. rolls_out: dataset None means a rollout of the agent in its environment."""
    def wrap(fn):
        _REGISTRY[name] = Entry(name, description, needs_agent, fn, compare, tuple(formats), rolls_out)
        return fn
    return wrap


def figures() -> dict[str, Entry]:
    for mod in MODULES:
        importlib.import_module(mod)
    return dict(sorted(_REGISTRY.items()))


def make(name: str, agent=None, dataset=None, **params) -> Figured:
    entries = figures()
    if name not in entries:
        raise KeyError(f"unknown figure '{name}'; known figures: {', '.join(entries)}.")
    entry = entries[name]
    if entry.needs_agent and agent is None:
        raise ValueError(f"figure '{name}' needs an agent (--agent).")
    for key, value in params.items():
        _check_finite(key, value)
    return entry.make(agent, dataset, **params)


def _check_finite(key: str, value) -> None:
    """NaN or inf in a parameter (a target return, a shift) is a sentence here, not a traceback later."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"parameter {key} must be a finite number, got {v}.")
