"""Return-to-go sweeps: how a Decision Transformer's behaviour moves with the return it is asked for.

In the environment: every target x episode runs in ONE batched vector env with the KV-cached rollout
(models/rollout.py); achieved returns get interval estimates (analysis/core/stats.py: mean and interquartile
mean, percentile-bootstrap 95% CIs, as rliable recommends for few episodes), the action distribution
per target, and where the action token looks per target. Offline (no environment, so it works on uploaded trajectories): replay a logged
episode with its returns-to-go shifted and see how the predicted actions move.
"""
from __future__ import annotations


from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from models.base import inference
from models.errors import AgentError
from models.rollout import Episodes, episode_limit, episode_uniforms, run_episodes, run_one_at_a_time
from models.windows import TrainingData, gather_windows

from analysis.interp.attention import TOKEN_TYPES, steps_attention
from analysis.core.cache import cached, tee
from analysis.core.inputs import (embedded_inputs, embeds_states, last_step_outputs, receptive_field, shifted_rtg,
                                  training_data, window_rows)
from analysis.core.stats import interval_estimates, iqm  # noqa: F401 - iqm: re-exported for older imports


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
    # [T, E, S, 3] where the action token looked as the agent acted (shares on R, s, a tokens; layers and heads
    # averaged), recorded by the rollout itself; None for sweeps made without it (sweep_attention recomputes)
    token_shares: np.ndarray | None = None

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


def _check(agent, env_id):
    if not agent.has("return_conditioned"):
        raise AgentError(f"a return sweep needs a Decision Transformer; this agent is a {agent.kind}.")
    env_id = env_id or agent.config.env_id
    if not env_id:
        raise AgentError("the agent does not name an environment (env_id); choose one (cli.py --env ID, or Environment on the home page).")
    return env_id


# The rollout computes the action token's attention at every step anyway: recording it spares sweep_attention a
# second pass over every step of every episode (half of a CartPole sweep page's time).
_RECORD = ("observations", "actions", "rewards")


def _record(agent) -> tuple[str, ...]:
    return _RECORD + (("attention",) if agent.has("step_tokens") and agent.has("attention") else ())


def _to_sweep(ep: Episodes, targets, episodes, discrete, env_id, seed) -> Sweep:
    T, E = len(targets), episodes
    S = ep.rewards.shape[1]
    shares = None if ep.attention is None else ep.attention.mean((2, 3)).sum(2).reshape(T, E, S, 3)
    # returns summed from the recorded float32 rewards (what the sweep has always reported)
    return Sweep(targets, ep.rewards.sum(1).astype(float).reshape(T, E), ep.lengths.reshape(T, E),
                 ep.observations.reshape(T, E, S, -1), ep.actions.reshape(T, E, S, *ep.actions.shape[2:]),
                 ep.rewards.reshape(T, E, S), discrete, env_id, seed, shares)


def rtg_sweep(agent, targets, episodes: int = 16, seed: int = 0, env_id: str | None = None, sample: bool = True,
              progress=None, use_cache: bool = True) -> Sweep:
    """Every target x episode in one batched vector env (env i = target i // episodes, reset seed seed + i,
    its own action draws episode_uniforms(...)[i]), KV-cached (models.rollout.run_episodes).
    progress(fraction of episodes finished, message) is called after every step (the page's bar)."""
    env_id = _check(agent, env_id)
    targets = np.asarray(list(targets), float)
    n = len(targets) * episodes
    steps = episode_limit(env_id, agent)
    ep = run_episodes(agent, n, np.repeat(targets, episodes), seed=seed, env_id=env_id, sample=sample,
                      uniforms=episode_uniforms(n, steps, seed), use_cache=use_cache, record=_record(agent),
                      progress=tee(progress), limit=steps)
    return _to_sweep(ep, targets, episodes, agent.discrete, env_id, seed)


def rtg_sweep_naive(agent, targets, episodes: int = 16, seed: int = 0, env_id: str | None = None,
                    sample: bool = True) -> Sweep:
    """The naive twin of rtg_sweep, kept naive on purpose as the baseline of `cli.py bench --only rtg_sweep`:
    one episode at a time (models.rollout.run_one_at_a_time), the full receptive field recomputed every
    step (no cache, no batching). Same env seeds and the same per-env random draws as rtg_sweep, so the
    same episodes."""
    env_id = _check(agent, env_id)
    targets = np.asarray(list(targets), float)
    n = len(targets) * episodes
    steps = episode_limit(env_id, agent)
    ep = run_one_at_a_time(agent, n, np.repeat(targets, episodes), seed=seed, env_id=env_id, sample=sample,
                           uniforms=episode_uniforms(n, steps, seed), use_cache=False, record=_record(agent), limit=steps)
    return _to_sweep(ep, targets, episodes, agent.discrete, env_id, seed)


def sweep_attention(agent, sweep: Sweep) -> pd.DataFrame:
    """Where the action token looked, per target: share of attention on return-to-go, state and action
    tokens (layers and heads averaged over every step of every episode), one batched pass per episode."""
    T, E, S = sweep.rewards.shape
    lengths = sweep.lengths.ravel()
    keep = np.arange(S)[None, :] < lengths[:, None]
    if sweep.token_shares is not None:
        shares = sweep.token_shares.reshape(T * E, S, 3)[keep]
    else:
        shares = _recomputed_shares(agent, sweep, keep, lengths)
    episode_of = np.repeat(np.arange(T * E), lengths)
    rows = []
    for i, t in enumerate(sweep.targets):
        sel = (episode_of // E) == i
        for k, name in enumerate(TOKEN_TYPES):
            rows.append({"target_return": float(t), "token": name, "share": float(shares[sel, k].mean())})
    return pd.DataFrame(rows)


def _recomputed_shares(agent, sweep: Sweep, keep: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """[steps, 3] the action token's shares at every live step, recomputed from the recorded episodes."""
    T, E, S = sweep.rewards.shape
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
    return steps_attention(agent, data, np.arange(int(lengths.sum()))).mean((1, 2)).sum(1)


# ---- offline what-if: the logged trajectory with its returns-to-go shifted ---------------------------------
# An HF import recomputes a K-step window per step: on a 1,000-step D4RL episode x 5 shifts that was ~3-8 s.
MAX_REPLAY_STEPS = 250
@dataclass
class ShiftReplay:
    """Predicted actions along a logged episode with every return-to-go shifted by `shifts`."""

    shifts: np.ndarray          # [S] raw return units added to every R token
    predictions: np.ndarray     # [S, T, n_actions] action probabilities (discrete) or [S, T, act_dim] actions
    logged_actions: np.ndarray  # [T] or [T, act_dim]
    returns_to_go: np.ndarray   # [T] the logged R_t (before shifting)
    discrete: bool
    episode: int
    steps: np.ndarray | None = None   # [T] the episode steps shown: all, or an even sample of a long episode
    length: int | None = None         # steps in the episode

    def __post_init__(self):
        if self.steps is None:
            self.steps = np.arange(self.predictions.shape[1])
        self.length = self.length or int(self.predictions.shape[1])

    def to_frame(self) -> pd.DataFrame:
        S, T, A = self.predictions.shape
        idx = np.indices((S, T, A)).reshape(3, -1)
        col = "probability" if self.discrete else "action"
        return pd.DataFrame({"shift": self.shifts[idx[0]], "step": self.steps[idx[1]], "action" if self.discrete else "dim": idx[2],
                             col: self.predictions.ravel()})

    def logged_action_probability(self) -> np.ndarray:
        """[S, T] discrete only: the probability of the action that was actually taken."""
        return np.take_along_axis(self.predictions, self.logged_actions.astype(int)[None, :, None].repeat(len(self.shifts), 0), 2)[..., 0]


def rtg_shift_replay(agent, dataset, episode: int = 0, shifts=(-100.0, 0.0, 100.0), data: TrainingData | None = None,
                     max_steps: int = MAX_REPLAY_STEPS) -> ShiftReplay:
    """The model's actions along logged episode `episode` with its R tokens shifted, as it computes them
    while acting (a native DT: one pass over the episode; an HF import: its K-step window per step, at
    `max_steps` evenly spaced steps of a longer episode: each window is a forward of its own)."""
    if not agent.has("step_tokens"):
        raise AgentError(f"shifting the return-to-go needs a Decision Transformer; this agent is a {agent.kind}.")
    data = data if data is not None else training_data(agent, dataset)
    shifts = np.asarray(list(shifts), float)
    start, end = int(data.starts[episode]), int(data.ends[episode])
    T = end - start
    banded = agent.band is not None
    shown = np.arange(T) if banded or T <= max_steps else np.unique(np.linspace(0, T - 1, max_steps).round().astype(np.int64))
    steps = start + shown
    W = T if banded else receptive_field(agent)
    # windows gathered once for every shift (only their R tokens differ), in batches bounded by bytes (frame stacks)
    n = len(steps) if banded else window_rows(agent, data, len(steps), W)
    preds = [[] for _ in shifts]
    embed = embeds_states(agent, data)   # frame stacks: each frame embedded once for every shift
    with inference(agent):
        for i in range(0, len(steps), n):
            if banded:
                base = gather_windows(data, np.array([episode]), np.array([end - 1]), W, distinct_frames=embed)
            else:
                base = gather_windows(data, np.full(len(steps[i:i + n]), episode), steps[i:i + n], W,
                                      distinct_frames=embed)
            inputs = embedded_inputs(agent, base) if embed else agent.window_inputs(base)
            for j, s in enumerate(shifts):
                w = {**inputs, "returns_to_go": torch.as_tensor(shifted_rtg(agent, base, s))[..., None]}
                if banded:
                    p = agent(**w).action_preds[0]
                else:
                    p = last_step_outputs(agent, w).action_preds[:, -1]
                if agent.discrete:
                    p = p.softmax(-1)
                else:
                    p = agent.env_actions(p)
                preds[j].append(p.numpy())
    preds = [np.concatenate(p) for p in preds]
    return ShiftReplay(shifts, np.stack(preds), np.asarray(data.actions[steps]), data.rtg[steps] * agent.config.rtg_scale,
                       agent.discrete, episode, shown, T)


def return_range(agent, dataset=None) -> tuple[float, float]:
    """The returns of the agent's training data; for an agent that records none (HF and CORL imports), the
    returns of `dataset` (the one the user paired it with)."""
    d = agent.config.dataset
    if "return_min" in d:
        return float(d["return_min"]), float(d["return_max"])
    if dataset is None:
        raise ValueError("the agent does not record its training returns; pass targets explicitly.")
    r = dataset.episode_returns
    return float(r.min()), float(r.max())


def default_targets(agent, n: int = 6, dataset=None) -> list[float]:
    """n targets across the training data's returns (the range where conditioning can be learned)."""
    lo, hi = return_range(agent, dataset)
    return [round(float(v), 1) for v in np.linspace(lo, hi, n)]


def cached_sweep(agent, targets, episodes: int = 8, seed: int = 0, progress=None) -> Sweep:
    """rtg_sweep through the one cache (analysis/core/cache.py), keyed on the agent's content: a page draws three
    figures from one sweep. progress (or the caller's cache.context) sees the episodes run, or "cached"."""
    targets = [float(t) for t in targets]
    return cached("rtg_sweep", lambda: rtg_sweep(agent, targets, int(episodes), int(seed), progress=progress),
                  agent, targets=targets, episodes=int(episodes), seed=int(seed))


def default_shifts(agent, dataset=None) -> list[float]:
    d = agent.config.dataset
    if "return_min" in d or dataset is not None:
        lo, hi = return_range(agent, dataset)
        span = hi - lo
    else:
        span = agent.config.rtg_scale
    return [round(float(f * span), 1) for f in (-0.5, -0.25, 0.0, 0.25, 0.5)]
