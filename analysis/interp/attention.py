"""Attention over history: where a Decision Transformer's action-producing token looks, and the
Trajectory Transformer's attention by token dimension.

A DT predicts a_t from the hidden state of its s_t token, so "where the action looks" is the attention
row of the current state token. Everything here reads the named activation `blocks.{i}.attn.pattern`
(`agent.run_with_cache(inputs, names=PATTERNS)`, models/activations.py) on batched windows
(analysis/core/inputs.py): an episode is one batched pass, not a forward per step.
Attention weights are not explanations (Jain & Wallace 2019); the credit-assignment page is the
causal counterpart.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from models.base import inference
from models.windows import gather_windows

from analysis.core.inputs import episode_steps, receptive_field, step_windows, training_data, window_rows

TOKEN_TYPES = ("return-to-go", "state", "action")
_SHORT = ("R", "s", "a")
PATTERNS = "blocks.*.attn.pattern"


def attention_patterns(agent, inputs) -> list[torch.Tensor]:
    """Every block's attention pattern [B, heads, T, T_keys] for one forward of `inputs` (run_with_cache's:
    a dict of forward keyword arguments, or the tokens), block 0 first."""
    _, cache = agent.run_with_cache(inputs, names=PATTERNS)
    return [cache[f"blocks.{i}.attn.pattern"] for i in range(agent.n_layer)]


# ---- one window, every layer and head ---------------------------------------------------------------
@dataclass
class WindowAttention:
    """All attention maps of one context window ending at `step` of `episode`."""

    weights: np.ndarray      # [layers, heads, 3L, 3L]; rows are queries; tokens R, s, a per step
    valid: np.ndarray        # [3L] bool: token is a real step (not left padding)
    steps_back: np.ndarray   # [3L] int: 0 for the current step's tokens
    token_type: np.ndarray   # [3L] int index into TOKEN_TYPES
    episode: int
    step: int                # step within the episode of the window's last step

    @property
    def labels(self) -> list[str]:
        return [f"{_SHORT[k]} t-{b}" if b else f"{_SHORT[k]} t" for k, b in zip(self.token_type, self.steps_back)]

    @property
    def action_query(self) -> int:
        """Index of the current s_t token (the one the action head reads)."""
        return len(self.valid) - 2

    def to_frame(self) -> pd.DataFrame:
        L, H, T, _ = self.weights.shape
        q, k = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
        lab = np.array(self.labels)
        frames = [pd.DataFrame({"layer": layer, "head": head, "query": lab[q.ravel()], "key": lab[k.ravel()],
                                "weight": self.weights[layer, head].ravel()})
                  for layer in range(L) for head in range(H)]
        return pd.concat(frames, ignore_index=True)


def window_attention(agent, dataset, episode: int = 0, step: int | None = None, data=None) -> WindowAttention:
    """Attention maps over the K steps before and at `step` (default: the episode's middle), as the agent
    computes them while acting: a native DT's deeper layers read keys that saw further back (its receptive
    field, analysis/core/inputs.py), so the forward covers that field and the maps are cropped to the last K
    steps; rows of earlier queries then sum to less than one (the rest lies before the window)."""
    data = data if data is not None else training_data(agent, dataset)
    steps = episode_steps(data, episode)
    step = len(steps) // 2 if step is None else int(np.clip(step, 0, len(steps) - 1))
    K = agent.context_length
    kw = step_windows(agent, data, steps[step:step + 1], context=receptive_field(agent), embed=True)
    with inference(agent):
        att = attention_patterns(agent, kw)
    weights = torch.stack(att, 0)[:, 0, :, -3 * K:, -3 * K:].numpy()   # [layers, heads, 3K, 3K]
    valid = kw["attention_mask"][0, -K:].bool().numpy().repeat(3)
    steps_back = np.repeat(np.arange(K - 1, -1, -1), 3)
    return WindowAttention(weights, valid, steps_back, np.tile(np.arange(3), K), episode, step)


def by_token_type(att: WindowAttention) -> np.ndarray:
    """[layers, heads, 3]: the current state token's attention summed per token type."""
    row = att.weights[:, :, att.action_query, :]
    return np.stack([row[..., att.token_type == k].sum(-1) for k in range(3)], -1)


def by_steps_back(att: WindowAttention) -> np.ndarray:
    """[layers, heads, K]: the current state token's attention summed per step back (index 0 = now)."""
    row = att.weights[:, :, att.action_query, :]
    K = len(att.valid) // 3
    return row.reshape(*row.shape[:2], K, 3).sum(-1)[..., ::-1]


def attention_rollout(weights: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """Abnar & Zuidema (2020): heads averaged, the residual stream added as `residual` * identity, rows
    renormalised, multiplied up through the layers. weights [layers, heads, T, T] -> [T, T]."""
    T = weights.shape[-1]
    out = np.eye(T)
    for layer in weights.mean(1):
        a = residual * np.eye(T) + (1 - residual) * layer
        a = a / a.sum(-1, keepdims=True)
        out = a @ out
    return out


# ---- a whole episode, one batched pass ---------------------------------------------------------------
@dataclass
class EpisodeAttention:
    """For every step t of an episode, the state token s_t's attention over its window."""

    weights: np.ndarray      # [T, layers, heads, K, 3]: [t, l, h, k, type] = weight on step t-k's token of type
    rewards: np.ndarray      # [T] the episode's rewards (for the timeline beneath)
    episode: int

    def summary(self, layer: int | None = None) -> np.ndarray:
        """[T, K]: weight per step back, summed over token types, heads averaged (all layers averaged if None)."""
        w = self.weights.mean(2)
        w = w.mean(1) if layer is None else w[:, layer]
        return w.sum(-1)

    def type_shares(self) -> np.ndarray:
        """[T, 3]: share per token type, layers and heads averaged."""
        return self.weights.mean((1, 2)).sum(1)

    def to_frame(self) -> pd.DataFrame:
        T, L, H, K, _ = self.weights.shape
        idx = np.indices(self.weights.shape).reshape(5, -1)
        return pd.DataFrame({"step": idx[0], "layer": idx[1], "head": idx[2], "steps_back": idx[3],
                             "token": np.asarray(TOKEN_TYPES)[idx[4]], "weight": self.weights.ravel()})


def _action_rows(rows: torch.Tensor, mask: torch.Tensor, positions, K: int) -> np.ndarray:
    """Attention rows [n, layers, heads, 3W] of the state tokens of the steps at window positions `positions`
    [n] (windows of W steps, mask [n, W]) -> [n, layers, heads, K, 3], keys ordered by steps back (index 0 =
    that step); keys before the window or in its left padding are zero."""
    n = rows.shape[0]
    i = torch.arange(n)
    pos = torch.as_tensor(np.asarray(positions))
    back = pos[:, None] - torch.arange(K)[None]                             # [n, K] window step of each key step
    keys = (3 * back.clamp(min=0))[:, :, None] + torch.arange(3)            # [n, K, 3]
    out = rows[i[:, None, None], :, :, keys]                                # [n, K, 3, layers, heads]
    valid = (back >= 0) & mask.bool()[i[:, None], back.clamp(min=0)]
    out = out * valid[:, :, None, None, None].to(out.dtype)
    return out.permute(0, 3, 4, 1, 2).numpy()


def _last_state_rows(agent, kw: dict, K: int) -> torch.Tensor:
    """[B, layers, heads, 3K] each layer's attention row of the last s_t token (query 3K - 2). Only what that
    token needs is computed (run_with_cache last_state_only: the last block for that token alone, no last a_t,
    whose key column stays 0 as the causal mask makes it)."""
    if not agent.has("partial_forward"):   # no partial forward: the whole forward's patterns
        return torch.stack([a[:, :, 3 * K - 2] for a in attention_patterns(agent, kw)], 1)
    _, cache = agent.run_with_cache(kw, names=PATTERNS, last_state_only=True)
    return torch.stack([torch.nn.functional.pad(cache[f"blocks.{i}.attn.pattern"][:, :, -1], (0, 1))
                        for i in range(agent.n_layer)], 1)


def steps_attention(agent, data, steps: np.ndarray, token_budget: int = 200_000) -> np.ndarray:
    """[len(steps), layers, heads, K, 3]: the action-token attention of the agent *as it acts* at each of the
    dataset `steps`. A banded native DT acts on its whole episode (cached rollout), so each episode is one
    forward pass over its steps up to the last one asked for, episodes batched by length; an HF import
    acts on its last K steps, so each step gets its K-step window, all batched."""
    steps = np.asarray(steps, np.int64)
    K = agent.context_length
    out = np.zeros((len(steps), agent.n_layer, agent.n_head, K, 3), np.float32)
    with inference(agent):
        if agent.band is None:   # plain causal (HF import): it acts on its last K steps
            n = window_rows(agent, data, 512)
            for i in range(0, len(steps), n):
                kw = step_windows(agent, data, steps[i:i + n], embed=True)
                rows = _last_state_rows(agent, kw, K)
                out[i:i + n] = _action_rows(rows, kw["attention_mask"], np.full(len(rows), K - 1), K)
            return out
        episodes = np.searchsorted(data.starts, steps, side="right") - 1
        uniq = np.unique(episodes)
        last = np.array([steps[episodes == e].max() for e in uniq])
        need = last - data.starts[uniq] + 1
        order = np.argsort(need)
        i = 0
        while i < len(order):   # batches of episodes of similar length, bounded by tokens^2 per batch
            W = int(need[order[i]])
            j = i + 1
            while j < len(order) and (j - i + 1) * (3 * int(need[order[j]])) ** 2 <= token_budget * 30:
                j += 1
            batch = order[i:j]
            W = int(need[batch].max())
            w = gather_windows(data, uniq[batch], last[batch], W)
            kw = agent.window_inputs(w)
            att = attention_patterns(agent, kw)
            for b, e in enumerate(uniq[batch]):
                sel = np.flatnonzero(episodes == e)
                pos = W - 1 - (last[batch][b] - steps[sel])
                q = torch.as_tensor(3 * pos + 1)
                rows = torch.stack([a[b][:, q] for a in att], 0).permute(2, 0, 1, 3)   # [n, layers, heads, 3W]
                out[sel] = _action_rows(rows, kw["attention_mask"][b:b + 1].expand(len(sel), -1), pos, K)
            i = j
    return out


def steps_attention_naive(agent, data, steps: np.ndarray) -> np.ndarray:
    """The twin: one forward per step over the window the agent acts on (the receptive field, as the
    uncached rollout recomputes it)."""
    K, W = agent.context_length, receptive_field(agent)
    out = []
    with inference(agent):
        for s in steps:
            kw = step_windows(agent, data, np.asarray([s]), context=W)
            rows = torch.stack([a[:, :, 3 * W - 2] for a in attention_patterns(agent, kw)], 1)
            out.append(_action_rows(rows, kw["attention_mask"], np.array([W - 1]), K))
    return np.concatenate(out, 0)


def episode_attention(agent, dataset, episode: int = 0, data=None) -> EpisodeAttention:
    data = data if data is not None else training_data(agent, dataset)
    steps = episode_steps(data, episode)
    return EpisodeAttention(steps_attention(agent, data, steps), data.rewards[steps].astype(float), episode)


# ---- Trajectory Transformer: attention by token dimension ----------------------------------------------
@dataclass
class TTAttention:
    """Attention of a TT averaged over windows of K whole transitions (the paper's Fig. 3 view)."""

    weights: np.ndarray      # [layers, heads, T, T] mean over windows
    dims: np.ndarray         # [T] dimension index of each token (obs..., act..., reward, value)
    dim_names: list[str]     # [D]
    n_windows: int

    def by_dimension(self) -> np.ndarray:
        """[layers, D, D]: attention from query dim i to key dim j (summed over key positions, heads and
        query positions averaged)."""
        D = len(self.dim_names)
        w = self.weights.mean(1)
        out = np.zeros((w.shape[0], D, D))
        for i in range(D):
            for j in range(D):
                out[:, i, j] = w[:, self.dims == i][:, :, self.dims == j].sum(-1).mean(-1)
        return out

    def striation(self) -> np.ndarray:
        """[layers, heads]: weight on earlier tokens of the query's own dimension, over what uniform
        attention to the visible keys would give. ~1: no structure; >> 1: "striated" (each dimension
        reads its own past, as the paper found in some heads); the "Markovian" pattern puts its weight
        on the most recent transition instead."""
        T = len(self.dims)
        q, k = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
        same = (self.dims[q] == self.dims[k]) & (k < q)
        visible = (k <= q)
        queries = np.arange(T) >= len(self.dim_names)          # queries with a full transition behind them
        got = (self.weights * same).sum(-1)[..., queries].mean(-1)
        uniform = (same.sum(-1) / visible.sum(-1))[queries].mean()
        return got / uniform

    def recent_share(self) -> np.ndarray:
        """[layers, heads]: weight on the last D tokens (one transition back or less): the Markovian pattern."""
        T = len(self.dims)
        D = len(self.dim_names)
        q, k = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
        recent = (k <= q) & (k > q - D)
        queries = np.arange(T) >= D
        return (self.weights * recent).sum(-1)[..., queries].mean(-1)

    def to_frame(self) -> pd.DataFrame:
        L, H, T, _ = self.weights.shape
        idx = np.indices(self.weights.shape).reshape(4, -1)
        names = np.asarray(self.dim_names)
        return pd.DataFrame({"layer": idx[0], "head": idx[1], "query": idx[2], "key": idx[3],
                             "query_dim": names[self.dims[idx[2]]], "key_dim": names[self.dims[idx[3]]],
                             "weight": self.weights.ravel()})


def tt_dim_names(agent, dataset=None) -> list[str]:
    obs = list(dataset.obs_names) if dataset is not None and getattr(dataset, "obs_names", None) else \
        [f"obs{i}" for i in range(agent.obs_dim)]
    acts = [f"act{i}" for i in range(agent.act_dim)] if agent.act_dim > 1 else ["action"]
    return obs + acts + ["reward", "value"]


def tt_attention(agent, dataset, n_windows: int = 64, seed: int = 0, batch_size: int = 32) -> TTAttention:
    """Mean attention over n_windows windows of K whole transitions drawn inside episodes long enough."""
    tokens = agent.tokenize(dataset)
    K, D = agent.context_length, agent.D
    ok = np.flatnonzero(dataset.episode_lengths >= K)
    if not len(ok):
        raise ValueError(f"{dataset.source} has no episode of at least {K} steps (the TT's context).")
    rng = np.random.default_rng(seed)
    eps = rng.choice(ok, size=n_windows)
    starts = dataset.episode_starts[eps] + (rng.random(n_windows) * (dataset.episode_lengths[eps] - K + 1)).astype(int)
    win = tokens[starts[:, None] + np.arange(K)[None]].reshape(n_windows, K * D)[:, :-1]
    total = None
    with inference(agent):
        for i in range(0, n_windows, batch_size):
            att = attention_patterns(agent, torch.as_tensor(win[i:i + batch_size]))
            s = torch.stack(att, 0).sum(1).numpy()                             # [layers, heads, T, T]
            total = s if total is None else total + s
    T = win.shape[1]
    return TTAttention(total / n_windows, np.arange(T) % D, tt_dim_names(agent, dataset), n_windows)
