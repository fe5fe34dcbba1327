"""Return-to-go sweeps: how a Decision Transformer's behaviour moves with the return it is asked for.

In the environment: every target x episode runs in ONE batched vector env with the KV-cached rollout;
achieved returns get interval estimates (mean and interquartile mean, percentile-bootstrap 95% CIs, as
rliable recommends for few episodes), the action distribution per target, and where the action token
looks per target. Offline (no environment, so it works on uploaded trajectories): replay a logged
episode with its returns-to-go shifted and see how the predicted actions move.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np
import pandas as pd
import torch

import envs  # registers seqlens' environments; envs.make_vec / check_env_id are the only way to an env
from models.errors import AgentError
from models.windows import TrainingData, gather_windows

from .attention import TOKEN_TYPES, steps_attention
from .inputs import receptive_field, training_data


# ---- interval estimates -------------------------------------------------------------------------------
def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% (robust to a few outlier episodes)."""
    x = np.sort(np.asarray(x, float), axis=axis)
    n = x.shape[axis]
    lo, hi = int(np.floor(n * 0.25)), int(np.ceil(n * 0.75))
    return np.take(x, np.arange(lo, max(hi, lo + 1)), axis=axis).mean(axis=axis)


def interval_estimates(returns: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean and IQM of one target's episode returns with percentile-bootstrap CIs (rliable's defaults;
    rliable itself pulls in `arch` for this one resampling loop)."""
    r = np.asarray(returns, float)
    if len(r) < 2:
        v = float(r.mean())
        return {"mean": v, "ci_low": v, "ci_high": v, "iqm": v, "iqm_ci_low": v, "iqm_ci_high": v}
    rng = np.random.default_rng(seed)
    samples = r[rng.integers(0, len(r), size=(n_boot, len(r)))]
    q = [(1 - level) / 2, (1 + level) / 2]
    m_lo, m_hi = np.quantile(samples.mean(1), q)
    i_lo, i_hi = np.quantile(iqm(samples, axis=1), q)
    return {"mean": float(r.mean()), "ci_low": float(m_lo), "ci_high": float(m_hi),
            "iqm": float(iqm(r)), "iqm_ci_low": float(i_lo), "iqm_ci_high": float(i_hi)}


# ---- the sweep in the environment ---------------------------------------------------------------------
@dataclass
class Sweep:
    """Episodes of a target-return sweep, targets x episodes, with their trajectories."""

    targets: np.ndarray        # [T]
    returns: np.ndarray        # [T, E]
    lengths: np.ndarray        # [T, E]
    observations: np.ndarray   # [T, E, S, obs_dim] (S = longest episode; zeros past each end)
    actions: np.ndarray        # [T, E, S] int or [T, E, S, act_dim]
    rewards: np.ndarray        # [T, E, S]
    discrete: bool
    env_id: str
    seed: int

    def summary(self) -> pd.DataFrame:
        rows = [{"target_return": float(t), **interval_estimates(self.returns[i], seed=self.seed),
                 "std": float(self.returns[i].std()), "episodes": self.returns.shape[1]}
                for i, t in enumerate(self.targets)]
        return pd.DataFrame(rows)

    def to_frame(self) -> pd.DataFrame:
        T, E = self.returns.shape
        return pd.DataFrame({"target_return": np.repeat(self.targets, E), "episode": np.tile(np.arange(E), T),
                             "return": self.returns.ravel(), "length": self.lengths.ravel()})

    def action_distribution(self, n_actions: int | None = None) -> pd.DataFrame:
        """Discrete: share of each action per target. Continuous: quantiles of each action dimension."""
        T, E, S = self.rewards.shape
        alive = np.arange(S)[None, None, :] < self.lengths[..., None]
        rows = []
        for i, t in enumerate(self.targets):
            acts = self.actions[i][alive[i]]
            if self.discrete:
                n = n_actions or int(self.actions.max()) + 1
                counts = np.bincount(acts.astype(int), minlength=n)
                rows += [{"target_return": float(t), "action": a, "share": float(c / max(counts.sum(), 1))}
                         for a, c in enumerate(counts)]
            else:
                for d in range(acts.shape[-1]):
                    q = np.quantile(acts[:, d], [0.05, 0.25, 0.5, 0.75, 0.95])
                    rows.append({"target_return": float(t), "dim": d, "mean": float(acts[:, d].mean()),
                                 **{f"q{int(p * 100):02d}": float(v) for p, v in zip([0.05, 0.25, 0.5, 0.75, 0.95], q)}})
        return pd.DataFrame(rows)


def _uniforms(n_envs: int, steps: int, seed: int) -> np.ndarray:
    """Env i's action-sampling draws depend on (seed, i) only, so the one-at-a-time twin draws alike."""
    return np.stack([np.random.default_rng([seed, i]).random(steps) for i in range(n_envs)]).astype(np.float32)


def _limit(env_id: str, agent) -> int:
    spec = gym.spec(envs.check_env_id(env_id))
    return int(spec.max_episode_steps or agent.config.max_ep_len)


def _check(agent, env_id):
    if agent.kind != "dt":
        raise AgentError(f"a return sweep needs a Decision Transformer; this agent is a {agent.kind}.")
    env_id = env_id or agent.config.env_id
    if not env_id:
        raise AgentError("the agent does not name an environment (env_id); pass one to run a sweep.")
    return env_id


def rtg_sweep(agent, targets, episodes: int = 16, seed: int = 0, env_id: str | None = None, sample: bool = True,
              progress: Callable[[float], None] | None = None, use_cache: bool = True) -> Sweep:
    """Every target x episode in one batched vector env (env i = target i // episodes), KV-cached.
    progress(fraction of episodes finished) is called as episodes end (the page's progress bar)."""
    env_id = _check(agent, env_id)
    targets = np.asarray(list(targets), float)
    n = len(targets) * episodes
    steps = _limit(env_id, agent)
    vec = envs.make_vec(env_id, num_envs=n, vectorization_mode="sync")
    try:
        obs, _ = vec.reset(seed=seed)    # env i is seeded seed + i
        ro = agent.start_rollout(n, np.repeat(targets, episodes), sample=sample, seed=seed, use_cache=use_cache,
                                 uniforms=_uniforms(n, steps, seed))
        rec = _Recorder(n, steps, obs.shape[1], agent)
        for t in range(steps):
            actions = ro.act(obs)
            nxt, rewards, term, trunc, _ = vec.step(actions)
            ro.observe(rewards)
            rec.add(t, obs, actions, rewards, term | trunc)
            obs = nxt
            if progress:
                progress(float(rec.done.mean()))
            if rec.done.all():
                break
    finally:
        vec.close()
    return rec.sweep(targets, episodes, agent.discrete, env_id, seed)


def rtg_sweep_naive(agent, targets, episodes: int = 16, seed: int = 0, env_id: str | None = None,
                    sample: bool = True) -> Sweep:
    """The twin: one episode at a time, the full window recomputed every step (no cache, no batching).
    Same env seeds and the same per-env random draws as rtg_sweep, so the same episodes."""
    env_id = _check(agent, env_id)
    targets = np.asarray(list(targets), float)
    n = len(targets) * episodes
    steps = _limit(env_id, agent)
    u = _uniforms(n, steps, seed)
    rec = None
    for i in range(n):
        env = envs.make(env_id)
        obs, _ = env.reset(seed=seed + i)
        ro = agent.start_rollout(1, np.array([targets[i // episodes]]), sample=sample, seed=seed, use_cache=False,
                                 uniforms=u[i:i + 1])
        one = _Recorder(1, steps, len(obs), agent)
        for t in range(steps):
            a = ro.act(obs[None])
            nxt, r, term, trunc, _ = env.step(a[0])
            ro.observe(np.array([r]))
            one.add(t, obs[None], a, np.array([r]), np.array([term or trunc]))
            obs = nxt
            if one.done.all():
                break
        env.close()
        rec = one if rec is None else rec.extend(one)
    return rec.sweep(targets, episodes, agent.discrete, env_id, seed)


class _Recorder:
    """Trajectories of n envs until each one's first episode ends (autoreset steps ignored)."""

    def __init__(self, n: int, steps: int, obs_dim: int, agent):
        self.obs = np.zeros((n, steps, obs_dim), np.float32)
        self.act = np.zeros((n, steps), np.int64) if agent.discrete else np.zeros((n, steps, agent.act_dim), np.float32)
        self.rew = np.zeros((n, steps), np.float32)
        self.len = np.zeros(n, np.int64)
        self.done = np.zeros(n, bool)

    def add(self, t, obs, actions, rewards, ended):
        live = ~self.done
        self.obs[live, t] = obs[live]
        self.act[live, t] = np.asarray(actions)[live]
        self.rew[live, t] = np.asarray(rewards)[live]
        self.len[live] = t + 1
        self.done |= live & np.asarray(ended, bool)

    def extend(self, other: "_Recorder") -> "_Recorder":
        for k in ("obs", "act", "rew", "len", "done"):
            setattr(self, k, np.concatenate([getattr(self, k), getattr(other, k)]))
        return self

    def sweep(self, targets, episodes, discrete, env_id, seed) -> Sweep:
        T, E = len(targets), episodes
        S = int(self.len.max()) if len(self.len) else 0
        return Sweep(targets, self.rew.sum(1).astype(float).reshape(T, E), self.len.reshape(T, E),
                     self.obs[:, :S].reshape(T, E, S, -1), self.act[:, :S].reshape(T, E, S, *self.act.shape[2:]),
                     self.rew[:, :S].reshape(T, E, S), discrete, env_id, seed)


def sweep_attention(agent, sweep: Sweep) -> pd.DataFrame:
    """Where the action token looked, per target: share of attention on return-to-go, state and action
    tokens (layers and heads averaged over every step of every episode), one batched pass per episode."""
    T, E, S = sweep.rewards.shape
    lengths = sweep.lengths.ravel()
    keep = np.arange(S)[None, :] < lengths[:, None]
    c = agent.config
    mean = np.asarray(c.state_mean if c.state_mean is not None else np.zeros(agent.obs_dim), np.float32)
    std = np.maximum(np.asarray(c.state_std if c.state_std is not None else np.ones(agent.obs_dim), np.float32), 1e-6)
    rew = sweep.rewards.reshape(T * E, S)
    rtg = np.repeat(sweep.targets, E)[:, None] - np.concatenate([np.zeros((T * E, 1)), np.cumsum(rew, 1)[:, :-1]], 1)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    data = TrainingData(dataset=None, obs=((sweep.observations.reshape(T * E, S, -1)[keep] - mean) / std).astype(np.float32),
                        actions=sweep.actions.reshape(T * E, S, *sweep.actions.shape[3:])[keep], rewards=rew[keep],
                        rtg=(rtg[keep] / c.rtg_scale).astype(np.float32),
                        timesteps=np.minimum(np.where(keep, np.arange(S)[None], 0)[keep], c.max_ep_len - 1),
                        starts=starts, ends=starts + lengths)
    shares = steps_attention(agent, data, np.arange(int(lengths.sum()))).mean((1, 2)).sum(1)   # [steps, 3]
    episode_of = np.repeat(np.arange(T * E), lengths)
    rows = []
    for i, t in enumerate(sweep.targets):
        sel = (episode_of // E) == i
        for k, name in enumerate(TOKEN_TYPES):
            rows.append({"target_return": float(t), "token": name, "share": float(shares[sel, k].mean())})
    return pd.DataFrame(rows)


# ---- offline what-if: the logged trajectory with its returns-to-go shifted ---------------------------------
@dataclass
class ShiftReplay:
    """Predicted actions along a logged episode with every return-to-go shifted by `shifts`."""

    shifts: np.ndarray          # [S] raw return units added to every R token
    predictions: np.ndarray     # [S, T, n_actions] action probabilities (discrete) or [S, T, act_dim] actions
    logged_actions: np.ndarray  # [T] or [T, act_dim]
    returns_to_go: np.ndarray   # [T] the logged R_t (before shifting)
    discrete: bool
    episode: int

    def to_frame(self) -> pd.DataFrame:
        S, T, A = self.predictions.shape
        idx = np.indices((S, T, A)).reshape(3, -1)
        col = "probability" if self.discrete else "action"
        return pd.DataFrame({"shift": self.shifts[idx[0]], "step": idx[1], "action" if self.discrete else "dim": idx[2],
                             col: self.predictions.ravel()})

    def logged_action_probability(self) -> np.ndarray:
        """[S, T] discrete only: the probability of the action that was actually taken."""
        return np.take_along_axis(self.predictions, self.logged_actions.astype(int)[None, :, None].repeat(len(self.shifts), 0), 2)[..., 0]


def rtg_shift_replay(agent, dataset, episode: int = 0, shifts=(-100.0, 0.0, 100.0), data: TrainingData | None = None) -> ShiftReplay:
    """The model's actions along logged episode `episode` with its R tokens shifted, as it computes them
    while acting (a native DT: one pass over the episode; an HF import: its K-step window per step)."""
    if agent.kind != "dt":
        raise AgentError(f"shifting the return-to-go needs a Decision Transformer; this agent is a {agent.kind}.")
    data = data if data is not None else training_data(agent, dataset)
    shifts = np.asarray(list(shifts), float)
    start, end = int(data.starts[episode]), int(data.ends[episode])
    T = end - start
    steps = np.arange(start, end)
    banded = agent.hp.get("banded")
    W = T if banded else receptive_field(agent)
    preds = []
    agent.eval()
    with torch.no_grad():
        for s in shifts:
            if banded:
                w = gather_windows(data, np.array([episode]), np.array([end - 1]), W)
            else:
                w = gather_windows(data, np.full(T, episode), steps, W)
            w["rtg"] = np.where(w["mask"], w["rtg"] + np.float32(s / agent.config.rtg_scale), 0).astype(np.float32)
            out = agent(**agent.window_inputs(w)).action_preds
            p = out[0] if banded else out[:, -1]
            if agent.discrete:
                p = p.softmax(-1)
            else:
                p = agent.env_actions(p)
            preds.append(p.numpy())
    return ShiftReplay(shifts, np.stack(preds), np.asarray(data.actions[steps]), data.rtg[steps] * agent.config.rtg_scale,
                       agent.discrete, episode)


# ---- catalog entries -------------------------------------------------------------------------------------
from . import figures as _fig  # noqa: E402
from .catalog import Figured, register  # noqa: E402


def default_targets(agent, n: int = 6) -> list[float]:
    """n targets across the training data's returns (the range where conditioning can be learned)."""
    d = agent.config.dataset
    if "return_min" not in d:
        raise ValueError("the agent does not record its training returns; pass targets explicitly.")
    return [round(float(v), 1) for v in np.linspace(d["return_min"], d["return_max"], n)]


_SWEEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def cached_sweep(agent, targets, episodes: int = 8, seed: int = 0, progress=None) -> Sweep:
    """rtg_sweep memoised per agent object (a page draws three figures from one sweep; the last 8 kept)."""
    key = (tuple(float(t) for t in targets), int(episodes), int(seed))
    per_agent = _SWEEPS.setdefault(agent, {})
    if key not in per_agent:
        if len(per_agent) >= 8:
            per_agent.pop(next(iter(per_agent)))
        per_agent[key] = rtg_sweep(agent, list(key[0]), key[1], key[2], progress=progress)
    return per_agent[key]


def _sweep(agent, targets, episodes, seed):
    targets = default_targets(agent) if targets is None else [float(t) for t in targets]
    return cached_sweep(agent, targets, episodes, seed), {"targets": targets, "episodes": int(episodes), "seed": int(seed)}


def _range(agent):
    d = agent.config.dataset
    return (d["return_min"], d["return_max"]) if "return_min" in d else None


@register("rtg_sweep_returns", "achieved vs target return (mean, IQM, 95% CIs) in the environment")
def make_sweep_returns(agent, dataset, targets: list | None = None, episodes: int = 8, seed: int = 0) -> Figured:
    sw, params = _sweep(agent, targets, episodes, seed)
    s = sw.summary()
    fig = _fig.sweep_returns(s, f"Return conditioning: achieved vs target return ({sw.env_id}, {episodes} episodes per target)",
                             _range(agent))
    return Figured("rtg_sweep_returns", fig, s, params)


@register("rtg_sweep_actions", "the actions taken, per target return")
def make_sweep_actions(agent, dataset, targets: list | None = None, episodes: int = 8, seed: int = 0) -> Figured:
    sw, params = _sweep(agent, targets, episodes, seed)
    dist = sw.action_distribution(agent.config.n_actions)
    fig = _fig.sweep_actions(dist, sw.discrete, f"Actions taken per target return ({sw.env_id})",
                             getattr(dataset, "act_names", None) if sw.discrete else None)
    return Figured("rtg_sweep_actions", fig, dist, params)


@register("rtg_sweep_attention", "where the action token looks, per target return")
def make_sweep_attention(agent, dataset, targets: list | None = None, episodes: int = 8, seed: int = 0) -> Figured:
    sw, params = _sweep(agent, targets, episodes, seed)
    shares = sweep_attention(agent, sw)
    fig = _fig.sweep_attention(shares, f"Where the action token looks, per target return ({sw.env_id})")
    return Figured("rtg_sweep_attention", fig, shares, params)


def default_shifts(agent) -> list[float]:
    d = agent.config.dataset
    span = (d["return_max"] - d["return_min"]) if "return_min" in d else agent.config.rtg_scale
    return [round(float(f * span), 1) for f in (-0.5, -0.25, 0.0, 0.25, 0.5)]


@register("rtg_shift_replay", "offline what-if: a logged episode replayed with its return-to-go shifted")
def make_shift_replay(agent, dataset, episode: int = 0, shifts: list | None = None) -> Figured:
    shifts = default_shifts(agent) if shifts is None else [float(s) for s in shifts]
    r = rtg_shift_replay(agent, dataset, int(episode), shifts)
    if r.discrete:
        series, logged, y = r.logged_action_probability(), None, "P(logged action)"
    else:
        series, logged, y = r.predictions[..., 0], np.asarray(r.logged_actions).reshape(len(r.logged_actions), -1)[:, 0], "action (dim 0)"
    fig = _fig.shift_replay(r.shifts, series, logged, f"Episode {episode} replayed with its return-to-go shifted", y)
    fig.update_yaxes(range=[0, 1.02] if r.discrete else None)
    return Figured("rtg_shift_replay", fig, r.to_frame(), {"episode": int(episode), "shifts": shifts})
