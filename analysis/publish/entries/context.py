"""Catalog entries for context and memory: return in the environment and action prediction on the dataset
vs the context K' a Decision Transformer sees, beside Markov / recurrent references."""
from __future__ import annotations

import numpy as np

from analysis.publish.catalog import Figured, register
from analysis.behaviour.context import context_accuracy, context_returns, shipped_references, train_mlp_reference
from analysis.publish.figures import context_accuracy_figure, context_returns_figure
from analysis.publish.figures.text import plain


def _references(agent, dataset, mlp_steps: int) -> dict:
    refs = shipped_references(agent)
    if mlp_steps > 0 and dataset is not None and not any(r.has("markov") for r in refs.values()):
        refs[f"MLP (trained here, {mlp_steps} steps)"] = train_mlp_reference(dataset, mlp_steps)
    return refs


@register("context_returns", "return in the environment vs the context a Decision Transformer sees (runs the env)")
def make_context_returns(agent, dataset, episodes: int = 4, target_return: float = float("nan"), seed: int = 0,
                         references: bool = True, mlp_steps: int = 1000) -> Figured:
    target = None if target_return is None or np.isnan(target_return) else float(target_return)
    refs = _references(agent, dataset, mlp_steps) if references else {}
    res = context_returns(agent, episodes=episodes, target_return=target, seed=seed, references=refs)
    fig = context_returns_figure(res, f"Return vs context — {plain(res.agent)}")
    return Figured("context_returns", fig, res.to_frame(),
                   {"episodes": int(episodes), "target_return": res.target_return, "seed": int(seed),
                    "references": bool(references), "mlp_steps": int(mlp_steps)})


@register("context_accuracy", "action prediction on the dataset vs the context a Decision Transformer sees")
def make_context_accuracy(agent, dataset, n_steps: int = 4000, seed: int = 0, references: bool = True,
                          mlp_steps: int = 1000) -> Figured:
    refs = _references(agent, dataset, mlp_steps) if references else {}
    refs = {k: v for k, v in refs.items() if v.discrete == agent.discrete}
    res = context_accuracy(agent, dataset, n_steps=n_steps, seed=seed, references=refs)
    fig = context_accuracy_figure(res, f"Action prediction vs context — {plain(res.agent)}, {plain(dataset.source)}")
    return Figured("context_accuracy", fig, res.to_frame(),
                   {"n_steps": int(n_steps), "seed": int(seed), "references": bool(references), "mlp_steps": int(mlp_steps)})
