"""Causal views of a Trajectory Transformer: ablation and head-output patching on its token stream, read off
the next state, reward and value it predicts under teacher forcing.

A TT window is whole transitions of D = obs_dim + act_dim + 2 tokens [obs, act, reward, value]; position p's
logits (`head.logits`) score the bins of token p + 1's dimension. With the logged tokens as inputs (teacher
forcing) the predictions read here are
- the next state: the obs dims of every transition after the first, each predicted from the whole previous
  transitions and the obs dims before it;
- the reward and value of every transition, predicted from its observation and action.
They are decoded as the app decodes a TT elsewhere: the argmax bin's centre by default (analysis/behaviour/predictions,
models/tt_planner.predict_trajectory; "mean" = the expected value over the bins, the stop token left out).
Every error here is in raw units and cannot go below the quantization floor decode(encode(s)), which results
carry (agent.cfg.obs_quantization_floor).

- `tt_ablation`: zero- or mean-ablate heads and MLPs (analysis/interp/ablation's strings and means) over `n_windows`
  windows of K transitions drawn with `seed`; per dimension the mean absolute error intact and ablated with
  bootstrap 95% CIs over windows and the paired difference.
- `tt_head_patching`: a clean and a corrupted window of the same length, aligned token by token (the same
  window with its current observation or an earlier transition replaced from another episode, or two different
  windows); each head's output and each MLP's output of every layer patched from the clean run into the
  corrupted one at every position (one batched forward for the whole layer x component grid), and the effect on
  the predicted next state, reward and value normalised so that 0 is the corrupted prediction and 1 the clean
  one: <patched - corrupted, clean - corrupted> / |clean - corrupted|^2 (state dims scaled by the dataset's
  std). The decoding there is "mean" by default: the expected value moves smoothly under a patch, where an
  argmax jumps between bin centres.

Known answers (tests/test_tt_causal.py): an empty intervention is the plain forward; patching every head and
MLP of every layer reproduces the clean logits at every position whose token agrees in both windows (the
residual stream there is the same embedding plus the same components), so in the replacement modes the
whole prediction is the clean one; patching nothing leaves the corrupted one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from models.base import inference
from models.errors import AgentError
from models.checks import check_dataset
from models.tt_tokens import dataset_transitions

from analysis.interp.components import (Estimate, build_interventions, difference, estimate, layout, parse_ablation,
                                        tt_window_starts, tt_window_tokens)
from analysis.core.cache import report

DECODINGS = ("argmax", "mean")


def _check_tt(agent) -> None:
    if not agent.has("tokens"):
        raise AgentError(f"these views read a Trajectory Transformer's token predictions; a {agent.kind} agent has "
                         "none (a Decision Transformer's ablation is the figure 'ablation').")


def _check_decoding(decoding: str) -> str:
    if decoding not in DECODINGS:
        raise ValueError(f"decoding must be 'argmax' or 'mean', got {decoding!r}.")
    return decoding


# ---------------------------------------------------------------------------------------------------
# windows and decoded predictions
# ---------------------------------------------------------------------------------------------------
def decode(agent, logits: torch.Tensor, dim: int, decoding: str) -> tuple[np.ndarray, np.ndarray]:
    """logits [..., N + 1] of one dimension -> (decoded value [...] float64, argmax bin [...]) ."""
    probs = logits[..., :agent.N].double().softmax(-1)
    centres = torch.as_tensor(agent.discretizer.centres[dim], dtype=torch.float64)
    bins = probs.argmax(-1)
    value = centres[bins] if decoding == "argmax" else probs @ centres
    return value.numpy(), bins.numpy()


def _positions(agent, W: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """dim -> (positions whose logits predict it, transition index k) in a window of W transitions: obs dims for
    k >= 1 (the next state), reward and value for every k."""
    o, a, D = agent.obs_dim, agent.act_dim, agent.D
    out = {}
    for j in range(o):
        k = np.arange(1, W)
        out[j] = (k * D + j - 1, k)
    for j in (o + a, o + a + 1):
        k = np.arange(W)
        out[j] = (k * D + j - 1, k)
    return out


def _dim_names(agent, dataset) -> list[str]:
    """Names of the predicted dimensions: observations, then reward and value."""
    names = list(getattr(dataset, "obs_names", None) or [f"obs_{i}" for i in range(agent.obs_dim)])
    return names + ["reward", "value"]


def _dim_name(agent, dataset, dim: int) -> str:
    """Name of token dimension `dim` (obs dims, actions, reward, value)."""
    o, a = agent.obs_dim, agent.act_dim
    return _dim_names(agent, dataset)[dim if dim < o else o + (dim - o - a)]


# ---------------------------------------------------------------------------------------------------
# ablation
# ---------------------------------------------------------------------------------------------------
@dataclass
class TTAblation:
    """Mean absolute prediction error per dimension (raw units) intact vs ablated, over the same windows."""

    agent: str
    components: list[str]
    mode: str
    decoding: str
    dims: list[str]               # obs names..., "reward", "value", "state (L2)"
    intact: list[Estimate]
    ablated: list[Estimate]
    difference: list[Estimate]    # ablated - intact, paired per window
    changed: np.ndarray           # [dims] share of predictions whose argmax bin changes (L2 row: any obs dim)
    n_windows: int
    window: int                   # transitions per window
    seed: int
    obs_quantization_floor: float | None = None
    errors_intact: np.ndarray = field(repr=False, default=None)    # [dims, n_windows]
    errors_ablated: np.ndarray = field(repr=False, default=None)

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for i, d in enumerate(self.dims):
            i0, i1, df = self.intact[i], self.ablated[i], self.difference[i]
            rows.append({"model": self.agent, "ablate": " ".join(self.components), "mode": self.mode, "dimension": d,
                         "error_intact": i0.mean, "intact_ci_low": i0.ci_low, "intact_ci_high": i0.ci_high,
                         "error_ablated": i1.mean, "ablated_ci_low": i1.ci_low, "ablated_ci_high": i1.ci_high,
                         "change": df.mean, "change_ci_low": df.ci_low, "change_ci_high": df.ci_high,
                         "share_changed": float(self.changed[i]), "n_windows": self.n_windows, "window": self.window,
                         "decoding": self.decoding, "obs_quantization_floor": self.obs_quantization_floor})
        return pd.DataFrame(rows)


def _window_errors(agent, logits: torch.Tensor, truth: np.ndarray, W: int, decoding: str):
    """Per window mean |error| per dim (obs..., reward, value) and the state L2 -> [o + 3, B]; argmax bins."""
    o = agent.obs_dim
    errs, bins, obs_pred = [], [], []
    for dim, (pos, k) in _positions(agent, W).items():
        value, b = decode(agent, logits[:, pos], dim, decoding)          # [B, n]
        errs.append(np.abs(value - truth[:, k, dim]).mean(1))
        bins.append(b)
        if dim < o:
            obs_pred.append(value)
    obs_pred = np.stack(obs_pred, -1)                                     # [B, W - 1, o]
    l2 = np.linalg.norm(obs_pred - truth[:, 1:, :o], axis=-1).mean(1)
    return np.stack(errs + [l2]), bins


def tt_ablation(agent, dataset, ablate, mode: str = "zero", n_windows: int = 256, seed: int = 0,
                decoding: str = "argmax", batch_size: int = 64, name: str | None = None) -> TTAblation:
    """Zero- or mean-ablate `ablate` (analysis/interp/ablation strings, e.g. ["L0H1", "L2MLP"]) of a TT and compare its
    teacher-forced predictions of the next state, reward and value with the intact model's on `n_windows`
    windows of K transitions (seeded), per dimension, with bootstrap 95% CIs over windows."""
    _check_tt(agent)
    check_dataset(agent, dataset)
    _check_decoding(decoding)
    components, iv = build_interventions(agent, dataset, ablate, mode, 256, seed)
    starts, W = tt_window_starts(agent, dataset, n_windows, seed)
    tokens = agent.tokenize(dataset)
    raw = dataset_transitions(dataset, agent.cfg.discount)
    o = agent.obs_dim
    e0, e1, changed = [], [], []
    with inference(agent):
        for i in range(0, len(starts), batch_size):
            s = starts[i:i + batch_size]
            inputs = torch.as_tensor(tt_window_tokens(agent, tokens, s, W))
            truth = raw[s[:, None] + np.arange(W)[None, :]]               # [B, W, D]
            out0, _ = agent.run_with_cache(inputs, [])
            out1, _ = agent.run_with_cache(inputs, [], iv or None)
            err0, b0 = _window_errors(agent, out0.logits, truth, W, decoding)
            err1, b1 = _window_errors(agent, out1.logits, truth, W, decoding)
            e0.append(err0)
            e1.append(err1)
            ch = [(x != y).reshape(len(s), -1) for x, y in zip(b0, b1)]
            changed.append(np.stack([c.sum(1) for c in ch] + [np.stack([c for c in ch[:o]], -1).any(-1).sum(1)]))
            report(min(1.0, (i + batch_size) / len(starts)), f"TT ablation: {min(i + batch_size, len(starts))}/{len(starts)} windows")
    e0, e1 = np.concatenate(e0, 1), np.concatenate(e1, 1)
    counts = np.array([len(_positions(agent, W)[d][0]) for d in _positions(agent, W)] + [W - 1]) * len(starts)
    changed = np.concatenate(changed, 1).sum(1) / counts
    dims = _dim_names(agent, dataset) + ["state (L2)"]
    floor = agent.cfg.obs_quantization_floor
    return TTAblation(name or f"TT (K={agent.context_length})", [c.label for c in components], mode, decoding, dims,
                      [estimate(x, seed) for x in e0], [estimate(x, seed) for x in e1],
                      [difference(y, x, seed) for x, y in zip(e0, e1)], changed, len(starts), W, int(seed),
                      None if floor is None else float(floor), e0, e1)


# ---------------------------------------------------------------------------------------------------
# patching
# ---------------------------------------------------------------------------------------------------
@dataclass
class PatchInputs:
    """A clean and a corrupted token window of the same length, and where the predictions are read."""

    clean: np.ndarray             # [T] int64 input tokens
    corrupted: np.ndarray         # [T]
    past: int                     # p: transitions before the current one in the window
    description: str              # what differs, in words
    positions: dict               # target -> positions of the logits that predict it
    dims: dict                    # target -> dimension index of each of those positions
    logged: dict                  # target -> the clean window's logged values (raw units)


def _episode_step(dataset, episode: int, step: int, what: str) -> int:
    n_ep = dataset.n_episodes
    if not 0 <= int(episode) < n_ep:
        raise ValueError(f"{what} episode {episode} does not exist: {dataset.source} has episodes 0-{n_ep - 1}.")
    length = int(dataset.episode_lengths[episode])
    if not 0 <= int(step) < length - 1:
        raise ValueError(f"{what} step {step}: episode {episode} has steps 0-{length - 1}, and the predicted next state "
                         f"needs a logged one after it (0-{length - 2}).")
    return int(dataset.episode_starts[episode]) + int(step)


def tt_patching_inputs(agent, dataset, clean: tuple[int, int], corrupted: tuple[int, int] | None = None, *,
                       back: int = 0, donor: tuple[int, int] | None = None, n_transitions: int | None = None,
                       seed: int = 0) -> PatchInputs:
    """The clean window: transition `step` of `episode` (clean = (episode, step)) with the `n_transitions` before
    it (default K - 2, the most that fits beside the next observation; fewer near the episode's start) and the
    next observation, teacher-forced. The corrupted window, aligned token by token:
    - corrupted = (episode, step): that step's window of the same length (two different windows);
    - else the clean window with tokens from `donor` = (episode, step) (default: a step of another episode drawn
      with `seed`): back = 0 replaces the current observation, back = k >= 1 the whole transition k steps back."""
    _check_tt(agent)
    check_dataset(agent, dataset)
    K, D, o, a = agent.context_length, agent.D, agent.obs_dim, agent.act_dim
    if K < 2:
        raise AgentError("patching reads the next state after a whole transition: the TT needs a context of 2 "
                         f"transitions or more (this one has {K}).")
    ce, cs = (int(v) for v in clean)
    c_abs = _episode_step(dataset, ce, cs, "clean")
    p = K - 2 if n_transitions is None else int(n_transitions)
    if not 0 <= p <= K - 2:
        raise ValueError(f"n_transitions must be 0-{K - 2} (a window of K = {K} holds the past, the current transition "
                         "and the next observation).")
    p = min(p, cs)
    tokens = agent.tokenize(dataset)

    def window(abs_step: int, past: int) -> np.ndarray:
        w = np.concatenate([tokens[abs_step - past:abs_step + 1].reshape(-1), tokens[abs_step + 1, :o]])
        return w[:-1]

    if corrupted is not None:
        xe, xs = (int(v) for v in corrupted)
        x_abs = _episode_step(dataset, xe, xs, "corrupted")
        p = min(p, xs)
        clean_w, corrupt_w = window(c_abs, p), window(x_abs, p)
        what = f"episode {ce} step {cs} vs episode {xe} step {xs} ({p} transitions before each)"
    else:
        back = int(back)
        if not 0 <= back <= p:
            raise ValueError(f"back must be 0-{p}: the window holds {p} transitions before the current one "
                             "(0 replaces the current observation).")
        if donor is None:
            others = [e for e in range(dataset.n_episodes) if e != ce and dataset.episode_lengths[e] > 0]
            if not others:
                raise ValueError(f"{dataset.source} has one episode: give a donor step (donor=(episode, step)).")
            rng = np.random.default_rng(seed)
            de = int(rng.choice(others))
            ds_ = int(rng.integers(0, dataset.episode_lengths[de]))
        else:
            de, ds_ = (int(v) for v in donor)
            if not 0 <= de < dataset.n_episodes or not 0 <= ds_ < dataset.episode_lengths[de]:
                raise ValueError(f"donor episode {de} step {ds_} is not in {dataset.source}.")
        d_abs = int(dataset.episode_starts[de]) + ds_
        clean_w = window(c_abs, p)
        corrupt_w = clean_w.copy()
        if back == 0:
            corrupt_w[p * D:p * D + o] = tokens[d_abs, :o]
            what = f"episode {ce} step {cs}, its observation replaced by episode {de} step {ds_}'s"
        else:
            k = p - back
            corrupt_w[k * D:(k + 1) * D] = tokens[d_abs]
            what = (f"episode {ce} step {cs}, the transition {back} step{'s' if back > 1 else ''} back replaced by "
                    f"episode {de} step {ds_}'s")
    raw = dataset_transitions(dataset, agent.cfg.discount)
    positions = {"state": (p + 1) * D + np.arange(o) - 1, "reward": np.array([p * D + o + a - 1]),
                 "value": np.array([p * D + o + a])}
    dims = {"state": np.arange(o), "reward": np.array([o + a]), "value": np.array([o + a + 1])}
    logged = {"state": raw[c_abs + 1, :o], "reward": raw[c_abs, [o + a]], "value": raw[c_abs, [o + a + 1]]}
    return PatchInputs(clean_w.astype(np.int64), corrupt_w.astype(np.int64), p, what, positions, dims, logged)


def _component_interventions(agent, clean_cache: dict, rows: list[list]) -> dict:
    """Interventions for a batch of corrupted copies: row r takes from the clean run the components rows[r]
    (Component objects) at every position; every other row and component is left as it is."""
    n_layer, n_head = layout(agent)
    R = len(rows)
    head_mask = torch.zeros(n_layer, R, 1, n_head, 1, dtype=torch.bool)
    mlp_mask = torch.zeros(n_layer, R, 1, 1, dtype=torch.bool)
    for r, comps in enumerate(rows):
        for c in comps:
            if c.head is None:
                mlp_mask[c.layer, r] = True
            else:
                head_mask[c.layer, r, 0, c.head] = True
    out = {}
    for i in range(n_layer):
        if head_mask[i].any():
            name = f"blocks.{i}.attn.head_out"
            out[name] = (lambda m, src: lambda h: torch.where(m, src, h))(head_mask[i], clean_cache[name])
        if mlp_mask[i].any():
            name = f"blocks.{i}.mlp.out"
            out[name] = (lambda m, src: lambda h: torch.where(m, src, h))(mlp_mask[i], clean_cache[name])
    return out


def tt_patch(agent, clean: np.ndarray, corrupted: np.ndarray, patch="all") -> torch.Tensor:
    """The corrupted window's logits [T, N + 1] with the components `patch` (analysis/interp/ablation strings, or "all":
    every head and MLP of every layer; [] or None: nothing) taken from the clean run at every position."""
    _check_tt(agent)
    clean, corrupted = np.asarray(clean), np.asarray(corrupted)
    if clean.shape != corrupted.shape:
        raise ValueError(f"clean and corrupted windows must be the same length to patch position by position; got "
                         f"{clean.shape[-1]} and {corrupted.shape[-1]} tokens.")
    n_layer, n_head = layout(agent)
    if patch == "all":
        comps = parse_ablation(agent, [f"L{i}H*" for i in range(n_layer)] + [f"L{i}MLP" for i in range(n_layer)])
    else:
        comps = parse_ablation(agent, patch) if patch else []
    names = sorted({c.activation for c in comps})
    with inference(agent):
        if not comps:
            return agent(torch.as_tensor(corrupted)[None]).logits[0]
        _, cache = agent.run_with_cache(torch.as_tensor(clean)[None], names)
        out, _ = agent.run_with_cache(torch.as_tensor(corrupted)[None], [], _component_interventions(agent, cache, [comps]))
    return out.logits[0]


@dataclass
class TTPatching:
    """Layer x component map of the normalised effect of patching one head's (or MLP's) output from the clean
    run into the corrupted one, at every position, on the predicted next state, reward and value."""

    agent: str
    description: str
    columns: list[str]            # "H0", ..., "MLP"
    n_layer: int
    past: int
    decoding: str
    dims: dict                    # target -> dimension names
    effect: dict                  # target -> [n_layer, columns] (NaN where clean and corrupted predict alike)
    patched: dict                 # target -> [n_layer, columns, dims] decoded predictions
    clean: dict                   # target -> [dims]
    corrupted: dict               # target -> [dims]
    logged: dict                  # target -> [dims] what the clean episode logged
    seed: int = 0
    note: str = ""

    TARGETS = ("state", "reward", "value")

    def to_frame(self, target: str | None = None) -> pd.DataFrame:
        rows = []
        for t in [target] if target else self.TARGETS:
            for i in range(self.n_layer):
                for j, col in enumerate(self.columns):
                    for d, dim in enumerate(self.dims[t]):
                        rows.append({"model": self.agent, "target": t, "layer": i, "component": f"L{i}{col}",
                                     "normalised_effect": self.effect[t][i, j], "dimension": dim,
                                     "patched": self.patched[t][i, j, d], "clean": self.clean[t][d],
                                     "corrupted": self.corrupted[t][d], "logged": self.logged[t][d],
                                     "decoding": self.decoding, "pair": self.description})
        return pd.DataFrame(rows)


def _normalised(patched: np.ndarray, clean: np.ndarray, corrupted: np.ndarray, scale: np.ndarray):
    """<patched - corrupted, clean - corrupted> / |clean - corrupted|^2 over the last axis, dims divided by scale."""
    gap = (clean - corrupted) / scale
    denom = float(gap @ gap)
    if denom < 1e-12:
        return np.full(patched.shape[:-1], np.nan), False
    return ((patched - corrupted) / scale) @ gap / denom, True


def tt_head_patching(agent, dataset, clean: tuple[int, int], corrupted: tuple[int, int] | None = None, *, back: int = 0,
                     donor: tuple[int, int] | None = None, n_transitions: int | None = None, decoding: str = "mean",
                     seed: int = 0, name: str | None = None) -> TTPatching:
    """Patch each head's output (and each MLP's) of every layer from the clean window into the corrupted one
    (tt_patching_inputs: clean = (episode, step); corrupted = (episode, step), or the current observation / the
    transition `back` steps back replaced from `donor`), at every position, in one batched forward; the
    normalised effect on the predicted next state, reward and value (0: corrupted, 1: clean)."""
    _check_decoding(decoding)
    pin = tt_patching_inputs(agent, dataset, clean, corrupted, back=back, donor=donor, n_transitions=n_transitions, seed=seed)
    n_layer, n_head = layout(agent)
    grid = [[c] for c in parse_ablation(agent, [f"L{i}H*" for i in range(n_layer)] + [f"L{i}MLP" for i in range(n_layer)])]
    names = sorted({c[0].activation for c in grid})
    with inference(agent):
        out_c, cache = agent.run_with_cache(torch.as_tensor(pin.clean)[None], names)
        out_x = agent(torch.as_tensor(pin.corrupted)[None])
        batch = torch.as_tensor(pin.corrupted)[None].expand(len(grid), -1)
        out_p, _ = agent.run_with_cache(batch, [], _component_interventions(agent, cache, grid))
    scale = np.maximum(dataset.observations.std(0).astype(np.float64), 1e-8)
    C = n_head + 1
    effect, patched, clean_v, corrupt_v, dims, notes = {}, {}, {}, {}, {}, []
    for t in TTPatching.TARGETS:
        pos, ds = pin.positions[t], pin.dims[t]

        def dec(logits):
            return np.stack([decode(agent, logits[..., q, :], int(d), decoding)[0] for q, d in zip(pos, ds)], -1)
        clean_v[t], corrupt_v[t] = dec(out_c.logits)[0], dec(out_x.logits)[0]
        patched[t] = dec(out_p.logits).reshape(n_layer, C, len(ds))
        sc = scale if t == "state" else np.ones(1)
        effect[t], ok = _normalised(patched[t], clean_v[t], corrupt_v[t], sc)
        if not ok:
            notes.append(f"the corruption does not change the predicted {t}")
        dims[t] = [_dim_name(agent, dataset, int(d)) for d in ds]
    return TTPatching(name or f"TT (K={agent.context_length})", pin.description, [f"H{k}" for k in range(n_head)] + ["MLP"],
                      n_layer, pin.past, decoding, dims, effect, patched, clean_v, corrupt_v,
                      {t: np.asarray(v, float) for t, v in pin.logged.items()}, int(seed), "; ".join(notes))
