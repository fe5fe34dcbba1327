"""Catalog entries for attention: a Decision Transformer's window, episode and rollout views, and the
Trajectory Transformer's attention by token and by dimension."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.publish import figures as _fig
from analysis.interp.attention import (TOKEN_TYPES, attention_rollout, by_steps_back, by_token_type, episode_attention,
                                       tt_attention, window_attention)
from analysis.publish.catalog import Figured, register
from analysis.publish.figures.labels import action_dim_names, check_scale, data_name


def _dt_only(agent, what: str):
    if not agent.has("step_tokens"):
        raise ValueError(f"{what} needs a Decision Transformer; this agent is a {agent.kind}.")


def _window(agent, dataset, episode, step):
    _dt_only(agent, "this attention view")
    att = window_attention(agent, dataset, int(episode), step)
    return att, f" — episode {att.episode}, step {att.step}"


@register("attention_map", "one layer's attention over the context window (query x key tokens)")
def make_attention_map(agent, dataset, episode: int = 0, step: int | None = None, layer: int = -1,
                       head: int | None = None, scale: str = "data") -> Figured:
    """scale "data": the colours span 0 to the largest weight shown; "fixed": 0 to 1 (comparable across maps)."""
    check_scale(scale)
    att, where = _window(agent, dataset, episode, step)
    layer = int(layer) % att.weights.shape[0]
    fig = _fig.attention_map(att.weights, att.labels, att.valid, layer, head, where, scale, data_name(dataset))
    data = att.to_frame()
    data = data[(data["layer"] == layer) & ((data["head"] == head) if head is not None else True)]
    return Figured("attention_map", fig, data, {"episode": int(episode), "step": att.step, "layer": layer, "head": head,
                                                "scale": scale})


@register("attention_token_types", "share of the action token's attention on return-to-go, state and action tokens")
def make_attention_token_types(agent, dataset, episode: int = 0, step: int | None = None) -> Figured:
    att, where = _window(agent, dataset, episode, step)
    shares = by_token_type(att)
    L, H, _ = shares.shape
    idx = np.indices(shares.shape).reshape(3, -1)
    data = pd.DataFrame({"layer": idx[0] + 1, "head": idx[1], "token": np.asarray(TOKEN_TYPES)[idx[2]], "share": shares.ravel()})
    return Figured("attention_token_types", _fig.attention_by_type(shares, f"{where} of {data_name(dataset)}"), data, {"episode": int(episode), "step": att.step})


@register("attention_steps_back", "share of the action token's attention per step back")
def make_attention_steps_back(agent, dataset, episode: int = 0, step: int | None = None) -> Figured:
    att, where = _window(agent, dataset, episode, step)
    s = by_steps_back(att)
    idx = np.indices(s.shape).reshape(3, -1)
    data = pd.DataFrame({"layer": idx[0] + 1, "head": idx[1], "steps_back": idx[2], "share": s.ravel()})
    return Figured("attention_steps_back", _fig.attention_by_steps_back(s, f"{where} of {data_name(dataset)}"), data, {"episode": int(episode), "step": att.step})


@register("attention_rollout", "attention rollout across layers (Abnar & Zuidema 2020) from the action token")
def make_attention_rollout(agent, dataset, episode: int = 0, step: int | None = None) -> Figured:
    att, where = _window(agent, dataset, episode, step)
    keep = np.flatnonzero(att.valid)
    w = att.weights[:, :, keep][:, :, :, keep]
    w = w / np.maximum(w.sum(-1, keepdims=True), 1e-12)     # renormalise rows cropped at the window edge
    row = np.zeros(len(att.valid))
    row[keep] = attention_rollout(w)[list(keep).index(att.action_query)]
    fig = _fig.rollout_bars(row, att.labels, att.token_type, att.valid, f"{where} of {data_name(dataset)}")
    data = pd.DataFrame({"token": att.labels, "steps_back": att.steps_back, "type": np.asarray(TOKEN_TYPES)[att.token_type],
                         "rollout": row})[att.valid]
    return Figured("attention_rollout", fig, data, {"episode": int(episode), "step": att.step})


@register("attention_episode", "where the action token looks at every step of an episode (one batched pass)")
def make_attention_episode(agent, dataset, episode: int = 0, layer: int | None = None, scale: str = "data") -> Figured:
    check_scale(scale)
    _dt_only(agent, "episode attention")
    ea = episode_attention(agent, dataset, int(episode))
    summary = ea.summary(layer)
    which = "layers averaged" if layer is None else f"layer {int(layer) + 1}"
    fig = _fig.episode_attention_map(summary, ea.rewards, f"Where the action token looks over episode {episode} "
                                     f"({which})<br><sup>{data_name(dataset)}</sup>", scale)
    T, K = summary.shape
    data = pd.DataFrame({"step": np.repeat(np.arange(T), K), "steps_back": np.tile(np.arange(K), T), "weight": summary.ravel()})
    return Figured("attention_episode", fig, data, {"episode": int(episode), "layer": layer, "scale": scale})


def _tt(agent, dataset, n_windows, seed=0):
    if not agent.has("tokens"):
        raise ValueError(f"attention by dimension needs a Trajectory Transformer; this agent is a {agent.kind}.")
    return tt_attention(agent, dataset, int(n_windows), seed)


def _tt_names(agent, dataset, dim_names: list[str]) -> list[str]:
    """The TT's token dimensions with the dataset's own action names (Pendulum's torque, Reacher's two torques)."""
    o, a = int(agent.obs_dim), int(agent.act_dim)
    acts = action_dim_names(dataset, a, getattr(agent.config, "env_id", None))
    if len(dim_names) != o + a + 2 or any(n.startswith("action dim") for n in acts):
        return list(dim_names)
    return list(dim_names[:o]) + acts + list(dim_names[o + a:])


@register("tt_attention", "Trajectory Transformer token attention averaged over windows (striated vs Markovian)")
def make_tt_attention(agent, dataset, layer: int = 0, head: int | None = None, n_windows: int = 64) -> Figured:
    r = _tt(agent, dataset, n_windows)
    layer = int(layer) % r.weights.shape[0]
    fig = _fig.tt_attention_map(r.weights, r.dims, _tt_names(agent, dataset, r.dim_names), layer, head, r.n_windows,
                                data_name(dataset))
    data = r.to_frame()
    data = data[data["layer"] == layer]
    return Figured("tt_attention", fig, data, {"layer": layer, "head": head, "n_windows": int(n_windows)})


@register("tt_attention_dims", "Trajectory Transformer attention from each dimension to each dimension")
def make_tt_attention_dims(agent, dataset, layer: int = 0, n_windows: int = 64) -> Figured:
    r = _tt(agent, dataset, n_windows)
    layer = int(layer) % r.weights.shape[0]
    by = r.by_dimension()[layer]
    names = _tt_names(agent, dataset, r.dim_names)
    D = len(names)
    data = pd.DataFrame({"query_dim": np.repeat(names, D), "key_dim": np.tile(names, D), "weight": by.ravel()})
    return Figured("tt_attention_dims", _fig.tt_dimension_map(by, names, layer, data_name(dataset)), data,
                   {"layer": layer, "n_windows": int(n_windows)})
