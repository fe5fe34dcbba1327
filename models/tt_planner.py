"""Trajectory Transformer planning: beam search with the KV cache, open-loop prediction under logged actions,
and the rollout that plans every step. Functions of the model (models/trajectory_transformer.py, whose
methods plan / plan_tokens / predict_trajectory / start_rollout call them); `model` is a TrajectoryTransformer,
which this module never imports (the model imports the planner, not the other way round).

Planning is the reference's beam search (`beam_plan`): sample actions, read off reward and value,
keep the beams with the best  sum_{k<t} discount^k r_k + discount^t V_t,  then predict the next
observation, for `horizon` transitions. Decoding choices (hparams, overridable per call):
  action_proposal  "model": sample the model's action tokens (reference); "uniform": over the action
                   bins seen in training (for a model trained with action_weight 0, whose action head
                   is untrained); "argmax": the model's most likely action (greedy, no search left).
  action_cdf       drop the least likely action bins holding this share of the probability (reference
                   cdf_act = 0.6, i.e. nucleus sampling with top-p 0.4); 0 keeps every bin (default: when
                   one bin holds over 40% of the mass, as a clipped torque can, 0.6 keeps only that bin
                   and the search never tries another action). A partial nucleus (pendulum-tt: 0.3) keeps
                   the search on actions the data took in similar states: where the data's action is a
                   function of the state (Pendulum near the top), the model barely reads the action and
                   its predictions for other actions are wrong (and optimistic).
  obs_decoding     "argmax" (reference k_obs = 1) or "sample".
  value_decoding   how a predicted reward / value scores a beam: "mean" = expected value over the bins
                   (reference), "argmax" = the most likely bin's centre (ARCHITECTURE.md: predicts better),
                   "quantile" = the value's upper quantile `value_quantile` (rewards keep the mean).
                   Behaviour data that mixes policies (Pendulum: a per-episode torque-reversal rate the
                   model cannot see) gives a bimodal value: near the top "held" (~0) or "falls" (-100
                   and below). Its mean scores a state by how often the data's WORSE policies fall from
                   it and ranked the stabilising torques below doing nothing; the upper quantile is the
                   value of the better behaviours seen from that state (cf. IQL's expectile), which a
                   planner that replans every step can follow.
  value_quantile   the quantile for value_decoding "quantile" (default 0.9).
The reward and value tokens appended to a beam are always the argmax bins (reference k_rew = 1).
Stop tokens (after a terminated episode) are trained on but never proposed: plans do not end early.

Context: the model sees at most K = context_length transitions (K * D - 1 tokens). A plan of H
transitions therefore keeps only the last K - H real transitions before the current observation,
so the search never crops its window and the KV cache stays exact; H <= K is the horizon cap.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .base import Agent, RolloutBase, inference

PLAN_OPTIONS = ("beam_width", "horizon", "n_expand", "discount", "action_proposal", "action_cdf", "obs_decoding", "value_decoding",
                "value_quantile")


@dataclass
class Plan:
    """The best beam of one search: H planned transitions, decoded to bin centres (raw units)."""

    observations: np.ndarray   # [H, obs_dim]; row 0 is the current observation (quantized)
    actions: np.ndarray        # [H, act_dim]
    rewards: np.ndarray        # [H]
    values: np.ndarray         # [H] predicted discounted return-to-go from each planned step
    first_action: np.ndarray   # [act_dim] float32 clipped to the action bounds (int64 scalar array if discrete)
    score: float               # sum_{k<H-1} discount^k r_k + discount^(H-1) V_{H-1}, as the search scored it
    tokens: np.ndarray         # [H, D] int64


@dataclass
class Prediction:
    """Open-loop prediction under logged actions: step t's actions -> next observations."""

    observations: np.ndarray   # [B, H, obs_dim]: predicted obs at t+1..t+H
    rewards: np.ndarray        # [B, H]: predicted rewards at t..t+H-1
    values: np.ndarray         # [B, H]
    tokens: np.ndarray         # [B, H, D] the generated transitions (actions teacher-forced)


# ---- decoding helpers --------------------------------------------------------------------------------
def bin_probs(model, logits: torch.Tensor, dim: int, seen_only: bool = False) -> torch.Tensor:
    """Probabilities over the N bins of `dim` (the stop token left out)."""
    lg = logits[:, :model.N]
    if seen_only:
        lg = lg.masked_fill(~model.seen_bins[dim], float("-inf"))
    return lg.softmax(dim=-1)


def expect(model, probs: torch.Tensor, dim: int, how: str, quantile: float = 0.9) -> torch.Tensor:
    if how == "mean":
        return probs @ model.centres[dim]
    if how == "argmax":
        return model.centres[dim][probs.argmax(dim=-1)]
    if how == "quantile":
        # the first bin whose cumulative probability reaches q (centres ascend with the bin)
        if not 0.0 < float(quantile) <= 1.0:
            raise ValueError(f"value_quantile must be in (0, 1], got {quantile!r}")
        below = (probs.cumsum(dim=-1) < float(quantile) * probs.sum(dim=-1, keepdim=True) - 1e-6).sum(dim=-1)
        return model.centres[dim][below.clamp_max(model.N - 1)]
    raise ValueError(f"value_decoding must be 'mean', 'argmax' or 'quantile', got {how!r}")


def sample(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # inverse CDF with one uniform per row: both search paths draw the same numbers in the same order
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(len(probs), 1, generator=generator).to(probs.device) * cdf[:, -1:]   # CPU generator: same draws on any device
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_max(probs.shape[1] - 1)


def filter_cdf(probs: torch.Tensor, cdf: float | None) -> torch.Tensor:
    """Drop the least likely bins that together hold `cdf` of the mass (reference filter_cdf)."""
    if cdf is None or cdf <= 0:
        return probs
    sp, order = probs.sort(dim=-1, descending=True, stable=True)
    before = sp.cumsum(dim=-1) - sp                          # mass of the likelier bins
    keep_sorted = before < 1.0 - cdf
    keep_sorted[:, 0] = True                                 # the likeliest bin always stays
    keep = torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)
    return probs * keep


def pick_action(model, logits, dim, proposal, cdf, generator):
    if proposal == "uniform":
        probs = model.seen_bins[dim].float().expand(len(logits), -1)
    else:
        probs = bin_probs(model, logits, dim, seen_only=True)
        if proposal == "argmax":
            return probs.argmax(dim=-1) + dim * model.N
        if proposal != "model":
            raise ValueError(f"action_proposal must be 'model', 'uniform' or 'argmax', got {proposal!r}")
        probs = filter_cdf(probs, cdf)
    return sample(probs, generator) + dim * model.N


# ---- planning (beam search) ------------------------------------------------------------------------
def plan_options(model, **overrides) -> dict:
    opts = {k: getattr(model.cfg, k) for k in PLAN_OPTIONS}
    unknown = sorted(set(overrides) - set(PLAN_OPTIONS))
    if unknown:
        raise ValueError(f"unknown planning option(s) {', '.join(unknown)}; known: {', '.join(PLAN_OPTIONS)}")
    explicit_h = overrides.get("horizon") is not None
    opts.update({k: v for k, v in overrides.items() if v is not None})
    if opts["action_proposal"] is None:
        opts["action_proposal"] = "uniform" if float(model.cfg.action_weight) == 0 else "model"
    K = model.context_length
    if explicit_h and opts["horizon"] > K:
        raise ValueError(f"horizon {opts['horizon']} exceeds the cap of {K} transitions (the model's window)")
    opts["horizon"] = min(int(opts["horizon"]), K)
    if opts["horizon"] < 1 or opts["beam_width"] < 1 or opts["n_expand"] < 1:
        raise ValueError("horizon, beam_width and n_expand must be at least 1")
    return opts


def plan(model, observations, actions=None, rewards=None, *, seed: int = 0, use_cache: bool = True, **options) -> Plan:
    """Beam-search plan from a raw history: observations [t+1, obs_dim] (the last is the current one),
    actions [t, act_dim] and rewards [t] before it. Options: beam_width, horizon, n_expand, discount,
    action_proposal, action_cdf, obs_decoding, value_decoding, value_quantile (defaults from hparams)."""
    opts = plan_options(model, **options)
    prefix = model.context_tokens(observations, actions, rewards, model.context_length - opts["horizon"])
    return plan_tokens(model, prefix[None], generator=torch.Generator().manual_seed(seed), use_cache=use_cache, **opts)[0]


def plan_tokens(model, prefix, *, generator: torch.Generator | None = None, use_cache: bool = True, **options) -> list[Plan]:
    """Beam search for E environments at once. prefix [E, p * D + obs_dim] tokens ending with the
    current observation; longer prefixes keep their last K - horizon transitions."""
    opts = plan_options(model, **options)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    dev = model.head_w.device
    prefix = torch.as_tensor(np.asarray(prefix), dtype=torch.long, device=dev)
    if prefix.ndim == 1:
        prefix = prefix[None]
    H, W, X, gamma = opts["horizon"], int(opts["beam_width"]), int(opts["n_expand"]), float(opts["discount"])
    o, a, D, N = model.obs_dim, model.act_dim, model.D, model.N
    if prefix.shape[1] % D != o:
        raise ValueError(f"a plan prefix is whole transitions plus the current observation ({o} tokens); got {prefix.shape[1]} tokens")
    keep = (model.context_length - H) * D + o
    prefix = prefix[:, -keep:]
    E = prefix.shape[0]
    disc = gamma ** torch.arange(H, dtype=torch.float32, device=dev)
    with inference(model):
        dec = Decoder(model, prefix, use_cache)
        dec.select(torch.arange(E, device=dev).repeat_interleave(W))           # [E * W] beams, env-major
        rewards = torch.zeros(E * W, H, device=dev)
        for t in range(H):
            grow = torch.arange(E * W, device=dev).view(E, 1, W).expand(E, X, W).reshape(-1)
            dec.select(grow)
            rewards = rewards[grow]
            for j in range(a):
                dec.append(pick_action(model, dec.logits, o + j, opts["action_proposal"], opts["action_cdf"], generator))
            p_r = bin_probs(model, dec.logits, o + a)
            dec.append(p_r.argmax(dim=-1) + (o + a) * N)
            p_v = bin_probs(model, dec.logits, o + a + 1)
            dec.append(p_v.argmax(dim=-1) + (o + a + 1) * N, need_logits=t < H - 1)
            r_t = expect(model, p_r, o + a, "mean" if opts["value_decoding"] == "quantile" else opts["value_decoding"])
            v_t = expect(model, p_v, o + a + 1, opts["value_decoding"], opts["value_quantile"])
            scores = (rewards[:, :t] * disc[:t]).sum(dim=1) + disc[t] * v_t
            rewards[:, t] = r_t
            order = scores.view(E, X * W).sort(dim=1, descending=True, stable=True).indices[:, :W]
            best = (order + torch.arange(E, device=dev)[:, None] * X * W).reshape(-1)
            dec.select(best)
            rewards, scores = rewards[best], scores[best]
            if t < H - 1:
                for j in range(o):
                    probs = bin_probs(model, dec.logits, j)
                    if opts["obs_decoding"] == "argmax":
                        tok = probs.argmax(dim=-1)
                    elif opts["obs_decoding"] == "sample":
                        tok = sample(probs, generator)
                    else:
                        raise ValueError(f"obs_decoding must be 'argmax' or 'sample', got {opts['obs_decoding']!r}")
                    dec.append(tok + j * N)
        top = torch.arange(E, device=dev) * W                                  # rows are sorted: each env's best first
        seqs = dec.tokens[top, -H * D:].reshape(E, H, D).cpu().numpy()
        top_scores = scores[top].tolist()
    return [to_plan(model, seqs[e], top_scores[e]) for e in range(E)]


def to_plan(model, tokens: np.ndarray, score: float) -> Plan:
    o, a = model.obs_dim, model.act_dim
    vals = model.discretizer.decode(tokens)
    acts = vals[:, o:o + a]
    if model.discrete:
        first = np.asarray(int(round(acts[0, 0])), np.int64)
    else:
        first = acts[0].astype(np.float32)
        if model.config.action_low is not None and model.config.action_high is not None:
            first = np.clip(first, model.config.action_low, model.config.action_high).astype(np.float32)
    return Plan(vals[:, :o], acts, vals[:, o + a], vals[:, o + a + 1], first, float(score), tokens)


# ---- open-loop prediction -------------------------------------------------------------------------
def predict_trajectory(model, context_tokens, actions, decoding: str = "argmax", use_cache: bool = True) -> Prediction:
    """Teacher-forced actions [B, H, act_dim] (or [H, act_dim]) after context_tokens [B, L] (or [L]) that
    end with the current observation -> predicted next observations, rewards and values. The tokens
    fed back are argmax bins; `decoding` "argmax" reports their centres, "mean" the expected value.
    Beyond the model's window the oldest transitions are cropped (and the cache rebuilt)."""
    dev = model.head_w.device
    ctx = torch.as_tensor(np.asarray(context_tokens), dtype=torch.long, device=dev)
    acts = np.asarray(actions, np.float64)
    if ctx.ndim == 1:
        ctx, acts = ctx[None], acts.reshape(1, -1, model.act_dim)
    acts = acts.reshape(len(ctx), -1, model.act_dim)
    o, a, D, N = model.obs_dim, model.act_dim, model.D, model.N
    if decoding not in ("argmax", "mean"):
        raise ValueError(f"decoding must be 'argmax' or 'mean', got {decoding!r}")
    if ctx.shape[1] % D != o:
        raise ValueError(f"context must be whole transitions plus the current observation ({o} tokens); got {ctx.shape[1]}")
    B, H = acts.shape[:2]
    act_tok = torch.from_numpy(model.discretizer.encode(acts, o)).to(dev)
    out_tok = np.zeros((B, H, D), np.int64)
    out_val = np.zeros((B, H, D))
    with inference(model):
        dec = Decoder(model, ctx, use_cache)
        for h in range(H):
            for j in range(a):
                dec.append(act_tok[:, h, j])
            for j in list(range(o + a, D)) + list(range(o)):      # reward, value, then next obs
                probs = bin_probs(model, dec.logits, j)
                tok = probs.argmax(dim=-1) + j * N
                out_tok[:, h, j] = tok.cpu().numpy()
                out_val[:, h, j] = expect(model, probs, j, decoding).cpu().numpy()
                dec.append(tok, need_logits=not (h == H - 1 and j == o - 1))
    out_tok[:, :, o:o + a] = act_tok.cpu().numpy()
    if decoding == "argmax":   # exact float64 bin centres
        out_val = model.discretizer.decode(out_tok)
    return Prediction(out_val[:, :, :o], out_val[:, :, o + a], out_val[:, :, o + a + 1], out_tok)


# ---- acting ---------------------------------------------------------------------------------------
def start_rollout(model, n_envs: int, target_returns: np.ndarray | None = None, sample: bool = True,
                  seed: int = 0, **options) -> TTRollout:
    """Plan every step with beam search (batched over envs). target_returns are ignored (TT plans for
    value); sample=False takes the model's most likely actions (greedy: nothing left to search)."""
    use_cache = options.pop("use_cache", True)
    if not sample:
        options.setdefault("action_proposal", "argmax")
    return TTRollout(model, n_envs, seed, plan_options(model, **options), use_cache)


class Decoder:
    """Next-token logits for a batch of growing token sequences, with a KV cache or by a full forward
    pass per token (the naive twin; identical results). The model sees at most block_size tokens:
    longer sequences are cropped by whole transitions from the left and the cache is rebuilt, since a
    slid cache is not exact (ARCHITECTURE.md, Conventions)."""

    def __init__(self, model: Agent, tokens: torch.Tensor, use_cache: bool):
        self.model, self.use_cache = model, use_cache
        self.tokens = tokens
        self.start = self._window_start()
        self._refresh()

    def _window_start(self) -> int:
        over = self.tokens.shape[1] - self.model.block_size
        return 0 if over <= 0 else -(-over // self.model.D) * self.model.D

    def _refresh(self) -> None:
        out = self.model(self.tokens[:, self.start:], use_cache=self.use_cache)
        self.logits, self.cache = out.logits[:, -1], out.past_key_values

    def append(self, tok: torch.Tensor, need_logits: bool = True) -> None:
        self.tokens = torch.cat([self.tokens, tok[:, None]], dim=1)
        if not need_logits:
            self.logits = self.cache = None
            return
        start = self._window_start()
        if not self.use_cache or start != self.start or self.cache is None:
            self.start = start
            self._refresh()
        else:
            out = self.model(tok[:, None], past_key_values=self.cache, use_cache=True)
            self.logits, self.cache = out.logits[:, -1], out.past_key_values

    def select(self, idx: torch.Tensor) -> None:
        """Keep / repeat / reorder rows (beams)."""
        self.tokens = self.tokens[idx]
        self.logits = None if self.logits is None else self.logits[idx]
        if self.cache is not None:
            self.cache = tuple((k[idx], v[idx]) for k, v in self.cache)


class TTRollout(RolloutBase):
    """Rollout protocol for TT: plan from the last K - H transitions and the current obs, act with the
    plan's first action. The last plans stay readable in `plans` (for the dashboard); policy() and value() read
    them, take() replaces the action the next plan reads."""

    def __init__(self, agent: Agent, n_envs: int, seed: int, options: dict, use_cache: bool = True):
        self.agent, self.n, self.options, self.use_cache = agent, n_envs, options, use_cache
        self.generator = torch.Generator().manual_seed(seed)
        self.keep = agent.context_length - options["horizon"]
        self.obs, self.actions, self.rewards = [], [], []
        self.plans: list[Plan] = []

    def act(self, obs: np.ndarray) -> np.ndarray:
        ag = self.agent
        obs = np.asarray(obs, np.float64).reshape(self.n, ag.obs_dim)
        if len(self.rewards) != len(self.actions):
            raise RuntimeError("call observe(rewards) after each act() before acting again")
        K = ag.context_length                                   # only the last K transitions are ever read
        self.obs, self.actions, self.rewards = self.obs[-K:], self.actions[-K:], self.rewards[-K:]
        self.obs.append(obs)
        p = min(len(self.actions), self.keep)
        parts = []
        if p:
            past = [ag.encode_transitions(self.obs[-p - 1 + i], self.actions[-p + i], self.rewards[-p + i]) for i in range(p)]
            parts.append(np.stack(past, axis=1).reshape(self.n, p * ag.D))      # [E, p * D]
        parts.append(ag.discretizer.encode(obs, 0))
        self.plans = ag.plan_tokens(np.concatenate(parts, axis=1), generator=self.generator, use_cache=self.use_cache, **self.options)
        acts = np.stack([pl.first_action for pl in self.plans])
        self.actions.append(acts.astype(np.float64).reshape(self.n, ag.act_dim))
        return acts.astype(np.int64) if ag.discrete else acts.astype(np.float32)

    def observe(self, rewards: np.ndarray) -> None:
        self.rewards.append(np.asarray(rewards, np.float64).reshape(self.n))

    def _last_plans(self, what: str) -> list:
        if not self.plans:
            raise ValueError(f"{what}() describes the last act(); call act() first.")
        return self.plans

    def take(self, actions) -> None:
        """After act(): the envs took `actions` [B] (env units) instead; the next plans read them as the transition's."""
        if not self.plans or len(self.actions) == len(self.rewards):
            raise ValueError("take() replaces the action of the last act(); call act() first.")
        self.actions[-1] = np.asarray(actions, np.float64).reshape(self.n, self.agent.act_dim)

    def policy(self) -> np.ndarray:
        """The planned first action: one-hot [B, n_actions] (discrete; the search chose it) or [B, act_dim] (env units)."""
        first = np.stack([pl.first_action for pl in self._last_plans("policy")])
        if self.agent.discrete:
            return np.eye(int(self.agent.config.n_actions))[first.reshape(self.n).astype(np.int64)]
        return first.astype(np.float32).reshape(self.n, self.agent.act_dim)

    def value(self) -> np.ndarray:
        """[B] the best plan's predicted discounted return-to-go from the current step (raw units)."""
        return np.array([float(pl.values[0]) for pl in self._last_plans("value")])
