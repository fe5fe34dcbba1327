"""Trajectory Transformer (Janner, Li & Levine 2021, arXiv 2106.02039): a GPT over discretized transitions.

Every transition becomes D = obs_dim + act_dim + 2 tokens [obs..., act..., reward, value], each dimension
quantized into N quantile bins (models/discretizer.py; token = bin + dim * N). Values are discounted
returns-to-go V_t = sum_{k>=t} discount^(k-t) r_k within the episode. Observations, actions and
rewards are tokenized RAW (not normalised by state mean/std): quantile bins do not care about scale,
and decoded predictions then come back in the units the dashboard shows.

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
                   (reference), "argmax" = the most likely bin's centre (DESIGN: predicts better),
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

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .base import Agent, AgentConfig, gpt2_init
from .discretizer import QuantileDiscretizer

DEFAULTS = dict(
    n_bins=100, hidden=128, n_layer=4, n_head=4, dropout=0.1, discount=0.99,
    action_weight=1.0,        # 0 leaves action tokens out of the loss (DESIGN: better predictions)
    reward_weight=1.0, value_weight=1.0,
    beam_width=32, horizon=5, n_expand=2,
    action_proposal=None,     # None: "model", or "uniform" when action_weight == 0
    action_cdf=0.0,           # reference 0.6; see the module docstring
    obs_decoding="argmax", value_decoding="mean", value_quantile=0.9,
)
PLAN_OPTIONS = ("beam_width", "horizon", "n_expand", "discount", "action_proposal", "action_cdf", "obs_decoding", "value_decoding",
                "value_quantile")


# ---------------------------------------------------------------------------------------------------
# data: values, transitions, tokens
# ---------------------------------------------------------------------------------------------------
def discounted_values(rewards: np.ndarray, starts: np.ndarray, ends: np.ndarray, discount: float) -> np.ndarray:
    """V_t = r_t + discount * V_{t+1} within each episode (0 past its end) [N] float64."""
    rewards = np.asarray(rewards, np.float64)
    out = np.zeros(len(rewards))
    lengths = np.asarray(ends) - np.asarray(starts)
    running = np.zeros(len(starts))
    for k in range(int(lengths.max()) if len(lengths) else 0):   # k steps back from every episode's end
        alive = lengths > k
        idx = np.asarray(ends)[alive] - 1 - k
        running[alive] = rewards[idx] + discount * running[alive]
        out[idx] = running[alive]
    return out


def dataset_transitions(dataset, discount: float) -> np.ndarray:
    """[N, obs_dim + act_dim + 2] raw [obs, act, reward, value] rows of a Dataset."""
    acts = dataset.actions.reshape(len(dataset.actions), -1).astype(np.float64)
    values = discounted_values(dataset.rewards, dataset.episode_starts, dataset.episode_ends, discount)
    return np.concatenate([dataset.observations, acts, dataset.rewards[:, None], values[:, None]], axis=1)


@dataclass
class TTOutput:
    logits: torch.Tensor                  # [B, T, N + 1]: position i scores the N bins (+ stop) of token i + 1's dimension
    attentions: tuple | None = None       # per layer [B, heads, T, past + T]
    past_key_values: tuple | None = None  # per layer (keys, values) [B, heads, past + T, head_dim]


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


# ---------------------------------------------------------------------------------------------------
# the GPT (nanoGPT-style)
# ---------------------------------------------------------------------------------------------------
class CausalSelfAttention(nn.Module):
    def __init__(self, hidden: int, n_head: int, dropout: float):
        super().__init__()
        if hidden % n_head:
            raise ValueError(f"hidden {hidden} must be divisible by n_head {n_head}")
        self.n_head = n_head
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.attn_drop = nn.Dropout(dropout)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x, past=None):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        S = k.shape[2]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])
        # query i sits at absolute position S - T + i and sees keys up to there
        causal = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(S - T)
        att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        y = (self.attn_drop(att) @ v).transpose(1, 2).reshape(B, T, C)
        return self.resid_drop(self.proj(y)), (k, v), att


class Block(nn.Module):
    def __init__(self, hidden: int, n_head: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.attn = CausalSelfAttention(hidden, n_head, dropout)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden), nn.Dropout(dropout))

    def forward(self, x, past=None):
        a, present, att = self.attn(self.ln1(x), past)
        x = x + a
        return x + self.mlp(self.ln2(x)), present, att


class TrajectoryTransformer(Agent):
    """TT agent. Build one for training with `TrajectoryTransformer.for_dataset(config, dataset)`."""

    def __init__(self, config: AgentConfig):
        super().__init__(config)
        if config.kind != "tt":
            raise ValueError(f"TrajectoryTransformer needs config.kind 'tt', got {config.kind!r}")
        hp = {**DEFAULTS, **config.hparams}
        config.hparams = hp                       # the resolved sizes are what the checkpoint records
        if "discretizer" not in hp:
            raise ValueError("a TT config needs hparams['discretizer']: build the agent with "
                             "TrajectoryTransformer.for_dataset(config, dataset), or load a checkpoint")
        self.discretizer = QuantileDiscretizer.from_dict(hp["discretizer"])
        self.N = int(hp["n_bins"])
        self.D = config.obs_dim + config.act_dim + 2
        if (self.discretizer.dim, self.discretizer.n_bins) != (self.D, self.N):
            raise ValueError(f"discretizer has {self.discretizer.dim} dims x {self.discretizer.n_bins} bins; "
                             f"the model needs {self.D} x {self.N}")
        if config.context_length < 1:
            raise ValueError("context_length (transitions per window) must be at least 1")
        self.stop_token, self.pad_token = self.N * self.D, self.N * self.D + 1
        self.block_size = config.context_length * self.D - 1     # inputs of a K-transition window
        C = int(hp["hidden"])
        self.tok_emb = nn.Embedding(self.N * self.D + 2, C)
        # Past values are unknown when acting (the reference fed a placeholder the model never trained on);
        # every value position reads this one vector instead, so training and acting see the same inputs.
        self.value_emb = nn.Parameter(torch.zeros(C))
        self.pos_emb = nn.Parameter(torch.zeros(1, self.block_size, C))
        self.drop = nn.Dropout(hp["dropout"])
        self.blocks = nn.ModuleList([Block(C, int(hp["n_head"]), hp["dropout"]) for _ in range(int(hp["n_layer"]))])
        self.ln_f = nn.LayerNorm(C)
        # one head per dimension (the reference's EinLinear): N bins + stop
        self.head_w = nn.Parameter(torch.randn(self.D, C, self.N + 1) * 0.02)
        self.head_b = nn.Parameter(torch.zeros(self.D, self.N + 1))
        self.apply(gpt2_init)
        self.register_buffer("centres", torch.tensor(self.discretizer.centres, dtype=torch.float32), persistent=False)
        self.register_buffer("seen_bins", torch.tensor(self.discretizer.counts > 0), persistent=False)
        w = [1.0] * config.obs_dim + [float(hp["action_weight"])] * config.act_dim + [float(hp["reward_weight"]), float(hp["value_weight"])]
        self.register_buffer("dim_weights", torch.tensor(w), persistent=False)
        self._tokens_cache = None

    @classmethod
    def for_dataset(cls, config: AgentConfig, dataset) -> "TrajectoryTransformer":
        """Fit the discretizer on the dataset's raw [obs, act, reward, value] and build the model."""
        if (dataset.obs_dim, dataset.act_dim, dataset.discrete) != (config.obs_dim, config.act_dim, config.discrete):
            raise ValueError(f"dataset has obs_dim {dataset.obs_dim}, act_dim {dataset.act_dim}, discrete {dataset.discrete}; "
                             f"the config says {config.obs_dim}, {config.act_dim}, {config.discrete}")
        hp = {**DEFAULTS, **config.hparams}
        data = dataset_transitions(dataset, hp["discount"])
        integer = [config.obs_dim] if config.discrete else []
        disc = QuantileDiscretizer.fit(data, int(hp["n_bins"]), integer_dims=integer)
        hp["discretizer"] = disc.to_dict()
        hp["obs_quantization_floor"] = disc.reconstruction_error(dataset.observations)
        config.hparams = hp
        return cls(config)

    # ---- facts -----------------------------------------------------------------------------------
    @property
    def hp(self) -> dict:
        return self.config.hparams

    def card(self) -> dict:
        return {**super().card(), "n_bins": self.N, "tokens_per_transition": self.D,
                "horizon_cap": (self.block_size + 1) // self.D, "beam_width": self.hp["beam_width"],
                "horizon": min(int(self.hp["horizon"]), self.context_length), "discount": self.hp["discount"],
                "obs_quantization_floor": self.hp.get("obs_quantization_floor")}

    def token_dims(self, positions: torch.Tensor) -> torch.Tensor:
        return positions % self.D

    # ---- forward ---------------------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, output_attentions: bool = False, past_key_values=None,
                use_cache: bool = False) -> TTOutput:
        """tokens [B, T] whose first token is obs dim 0 of a transition (counting the cached ones)."""
        h, past_len, attentions, presents = self._trunk(tokens, past_key_values)
        return TTOutput(self._heads(h, past_len), tuple(attentions) if output_attentions else None,
                        tuple(presents) if use_cache else None)

    def final_hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """The final layer norm's output [B, T, C] (what the heads read), without touching the module:
        analyses call this instead of hooking ln_f, so a shared agent is never mutated."""
        return self._trunk(tokens, None)[0]

    def _trunk(self, tokens: torch.Tensor, past_key_values):
        B, T = tokens.shape
        past_len = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        if past_len + T > self.block_size:
            raise ValueError(f"{past_len + T} tokens exceed the model's window of {self.block_size} "
                             f"({self.context_length} transitions of {self.D} tokens, minus one)")
        pos = torch.arange(past_len, past_len + T, device=tokens.device)
        x = self.tok_emb(tokens)
        x = torch.where((self.token_dims(pos) == self.D - 1)[None, :, None], self.value_emb, x)
        x = self.drop(x + self.pos_emb[0, pos])
        presents, attentions = [], []
        for i, block in enumerate(self.blocks):
            x, present, att = block(x, None if past_key_values is None else past_key_values[i])
            presents.append(present)
            attentions.append(att)
        return self.ln_f(x), past_len, attentions, presents

    def _heads(self, h: torch.Tensor, past_len: int) -> torch.Tensor:
        """Per-dimension output heads: position p scores the bins of dimension (p + 1) % D."""
        B, T, C = h.shape
        D = self.D
        if T < D:  # decoding a token or a few: gather those heads
            nxt = self.token_dims(torch.arange(past_len + 1, past_len + T + 1, device=h.device))
            return torch.einsum("btc,tcn->btn", h, self.head_w[nxt]) + self.head_b[nxt]
        # whole windows: pad to full transitions and apply all D heads at once (the reference's EinLinear)
        lead = (past_len + 1) % D
        tail = (-(lead + T)) % D
        hp = F.pad(h, (0, 0, lead, tail)).view(B, -1, D, C)
        out = torch.einsum("bkdc,dcn->bkdn", hp, self.head_w) + self.head_b
        return out.reshape(B, -1, self.N + 1)[:, lead:lead + T]
    # ---- tokens ----------------------------------------------------------------------------------
    def encode_transitions(self, observations, actions, rewards, values=None) -> np.ndarray:
        """Raw arrays [T, ...] -> tokens [T, D]; unknown values (acting) get a placeholder the model ignores."""
        obs = np.asarray(observations, np.float64).reshape(-1, self.obs_dim)
        acts = np.asarray(actions, np.float64).reshape(len(obs), self.act_dim)
        rew = np.asarray(rewards, np.float64).reshape(len(obs), 1)
        val = np.zeros((len(obs), 1)) if values is None else np.asarray(values, np.float64).reshape(len(obs), 1)
        return self.discretizer.encode(np.concatenate([obs, acts, rew, val], axis=1))

    def context_tokens(self, observations, actions=None, rewards=None, max_transitions: int | None = None) -> np.ndarray:
        """History obs [t+1, obs_dim] (the last is the current one), actions [t, act_dim], rewards [t]
        -> the token prefix [p * D + obs_dim] of the last p = min(t, max_transitions) transitions."""
        obs = np.asarray(observations, np.float64).reshape(-1, self.obs_dim)
        t = len(obs) - 1
        p = t if max_transitions is None else min(t, max_transitions)
        cur = self.discretizer.encode(obs[-1:], 0).reshape(-1)
        if p == 0:
            return cur
        if actions is None or rewards is None or len(actions) < t or len(rewards) < t:
            raise ValueError(f"{t + 1} observations need {t} actions and {t} rewards before them")
        past = self.encode_transitions(obs[t - p:t], np.asarray(actions)[t - p:t], np.asarray(rewards)[t - p:t])
        return np.concatenate([past.reshape(-1), cur])

    def tokenize(self, dataset) -> np.ndarray:
        """Every step of a Dataset as tokens [N, D] (true discounted values)."""
        return self.discretizer.encode(dataset_transitions(dataset, self.hp["discount"]))

    # ---- training --------------------------------------------------------------------------------
    def sample_batch(self, data, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Episodes drawn uniformly, a window of K whole transitions starting at a uniformly drawn step.

        Past the episode's end a window holds stop tokens (terminated: the model learns to predict the
        stop) or pad tokens (truncated: left out of the loss)."""
        ds = data.dataset
        if self._tokens_cache is None or self._tokens_cache[0] is not ds:
            self._tokens_cache = (ds, self.tokenize(ds))
        tokens = self._tokens_cache[1]
        K, D = self.context_length, self.D
        ep = rng.integers(0, len(data.starts), size=batch_size)
        starts, ends = data.starts[ep], data.ends[ep]
        first = starts + (rng.random(batch_size) * (ends - starts)).astype(np.int64)
        idx = first[:, None] + np.arange(K)[None, :]
        inside = idx < ends[:, None]
        fill = np.where(ds.terminated[ends - 1], self.stop_token, self.pad_token)
        win = np.where(inside[:, :, None], tokens[np.minimum(idx, len(tokens) - 1)], fill[:, None, None]).reshape(batch_size, K * D)
        win = torch.from_numpy(win)
        return {"inputs": win[:, :-1], "targets": win[:, 1:]}

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        out = self(batch["inputs"])
        targets = batch["targets"]
        B, T = targets.shape
        dims = self.token_dims(torch.arange(1, T + 1, device=targets.device))
        local = torch.where(targets == self.stop_token, self.N, targets - dims * self.N)
        valid = targets != self.pad_token
        ce = F.cross_entropy(out.logits.reshape(-1, self.N + 1), torch.where(valid, local, 0).reshape(-1),
                             reduction="none").view(B, T)
        w = self.dim_weights[dims] * valid
        loss = (ce * w).sum() / w.sum().clamp_min(1e-8)
        parts = {}
        o, a = self.obs_dim, self.obs_dim + self.act_dim
        for name, sel in (("obs", dims < o), ("act", (dims >= o) & (dims < a)), ("reward", dims == a), ("value", dims == a + 1)):
            m = valid & sel
            parts[f"ce_{name}"] = float((ce.detach() * m).sum() / m.sum().clamp_min(1))
        return loss, {"loss": loss.item(), **parts}

    # ---- decoding helpers ------------------------------------------------------------------------
    @contextmanager
    def _inference(self):
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was)

    def _bin_probs(self, logits: torch.Tensor, dim: int, seen_only: bool = False) -> torch.Tensor:
        """Probabilities over the N bins of `dim` (the stop token left out)."""
        lg = logits[:, :self.N]
        if seen_only:
            lg = lg.masked_fill(~self.seen_bins[dim], float("-inf"))
        return lg.softmax(dim=-1)

    def _expect(self, probs: torch.Tensor, dim: int, how: str, quantile: float = 0.9) -> torch.Tensor:
        if how == "mean":
            return probs @ self.centres[dim]
        if how == "argmax":
            return self.centres[dim][probs.argmax(dim=-1)]
        if how == "quantile":
            # the first bin whose cumulative probability reaches q (centres ascend with the bin)
            if not 0.0 < float(quantile) <= 1.0:
                raise ValueError(f"value_quantile must be in (0, 1], got {quantile!r}")
            below = (probs.cumsum(dim=-1) < float(quantile) * probs.sum(dim=-1, keepdim=True) - 1e-6).sum(dim=-1)
            return self.centres[dim][below.clamp_max(self.N - 1)]
        raise ValueError(f"value_decoding must be 'mean', 'argmax' or 'quantile', got {how!r}")

    @staticmethod
    def _sample(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # inverse CDF with one uniform per row: both search paths draw the same numbers in the same order
        cdf = probs.cumsum(dim=-1)
        u = torch.rand(len(probs), 1, generator=generator).to(probs.device) * cdf[:, -1:]   # CPU generator: same draws on any device
        return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_max(probs.shape[1] - 1)

    @staticmethod
    def _filter_cdf(probs: torch.Tensor, cdf: float | None) -> torch.Tensor:
        """Drop the least likely bins that together hold `cdf` of the mass (reference filter_cdf)."""
        if cdf is None or cdf <= 0:
            return probs
        sp, order = probs.sort(dim=-1, descending=True, stable=True)
        before = sp.cumsum(dim=-1) - sp                          # mass of the likelier bins
        keep_sorted = before < 1.0 - cdf
        keep_sorted[:, 0] = True                                 # the likeliest bin always stays
        keep = torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)
        return probs * keep

    def _pick_action(self, logits, dim, proposal, cdf, generator):
        if proposal == "uniform":
            probs = self.seen_bins[dim].float().expand(len(logits), -1)
        else:
            probs = self._bin_probs(logits, dim, seen_only=True)
            if proposal == "argmax":
                return probs.argmax(dim=-1) + dim * self.N
            if proposal != "model":
                raise ValueError(f"action_proposal must be 'model', 'uniform' or 'argmax', got {proposal!r}")
            probs = self._filter_cdf(probs, cdf)
        return self._sample(probs, generator) + dim * self.N

    # ---- planning --------------------------------------------------------------------------------
    def _plan_options(self, **overrides) -> dict:
        opts = {k: self.hp[k] for k in PLAN_OPTIONS}
        unknown = sorted(set(overrides) - set(PLAN_OPTIONS))
        if unknown:
            raise ValueError(f"unknown planning option(s) {', '.join(unknown)}; known: {', '.join(PLAN_OPTIONS)}")
        explicit_h = overrides.get("horizon") is not None
        opts.update({k: v for k, v in overrides.items() if v is not None})
        if opts["action_proposal"] is None:
            opts["action_proposal"] = "uniform" if float(self.hp["action_weight"]) == 0 else "model"
        K = self.context_length
        if explicit_h and opts["horizon"] > K:
            raise ValueError(f"horizon {opts['horizon']} exceeds the cap of {K} transitions (the model's window)")
        opts["horizon"] = min(int(opts["horizon"]), K)
        if opts["horizon"] < 1 or opts["beam_width"] < 1 or opts["n_expand"] < 1:
            raise ValueError("horizon, beam_width and n_expand must be at least 1")
        return opts

    def plan(self, observations, actions=None, rewards=None, *, seed: int = 0, use_cache: bool = True, **options) -> Plan:
        """Beam-search plan from a raw history: observations [t+1, obs_dim] (the last is the current one),
        actions [t, act_dim] and rewards [t] before it. Options: beam_width, horizon, n_expand, discount,
        action_proposal, action_cdf, obs_decoding, value_decoding, value_quantile (defaults from hparams)."""
        opts = self._plan_options(**options)
        prefix = self.context_tokens(observations, actions, rewards, self.context_length - opts["horizon"])
        return self.plan_tokens(prefix[None], generator=torch.Generator().manual_seed(seed), use_cache=use_cache, **opts)[0]

    def plan_tokens(self, prefix, *, generator: torch.Generator | None = None, use_cache: bool = True, **options) -> list[Plan]:
        """Beam search for E environments at once. prefix [E, p * D + obs_dim] tokens ending with the
        current observation; longer prefixes keep their last K - horizon transitions."""
        opts = self._plan_options(**options)
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        dev = self.head_w.device
        prefix = torch.as_tensor(np.asarray(prefix), dtype=torch.long, device=dev)
        if prefix.ndim == 1:
            prefix = prefix[None]
        H, W, X, gamma = opts["horizon"], int(opts["beam_width"]), int(opts["n_expand"]), float(opts["discount"])
        o, a, D, N = self.obs_dim, self.act_dim, self.D, self.N
        if prefix.shape[1] % D != o:
            raise ValueError(f"a plan prefix is whole transitions plus the current observation ({o} tokens); got {prefix.shape[1]} tokens")
        keep = (self.context_length - H) * D + o
        prefix = prefix[:, -keep:]
        E = prefix.shape[0]
        disc = gamma ** torch.arange(H, dtype=torch.float32, device=dev)
        with self._inference():
            dec = _Decoder(self, prefix, use_cache)
            dec.select(torch.arange(E, device=dev).repeat_interleave(W))           # [E * W] beams, env-major
            rewards = torch.zeros(E * W, H, device=dev)
            for t in range(H):
                grow = torch.arange(E * W, device=dev).view(E, 1, W).expand(E, X, W).reshape(-1)
                dec.select(grow)
                rewards = rewards[grow]
                for j in range(a):
                    dec.append(self._pick_action(dec.logits, o + j, opts["action_proposal"], opts["action_cdf"], generator))
                p_r = self._bin_probs(dec.logits, o + a)
                dec.append(p_r.argmax(dim=-1) + (o + a) * N)
                p_v = self._bin_probs(dec.logits, o + a + 1)
                dec.append(p_v.argmax(dim=-1) + (o + a + 1) * N, need_logits=t < H - 1)
                r_t = self._expect(p_r, o + a, "mean" if opts["value_decoding"] == "quantile" else opts["value_decoding"])
                v_t = self._expect(p_v, o + a + 1, opts["value_decoding"], opts["value_quantile"])
                scores = (rewards[:, :t] * disc[:t]).sum(dim=1) + disc[t] * v_t
                rewards[:, t] = r_t
                order = scores.view(E, X * W).sort(dim=1, descending=True, stable=True).indices[:, :W]
                best = (order + torch.arange(E, device=dev)[:, None] * X * W).reshape(-1)
                dec.select(best)
                rewards, scores = rewards[best], scores[best]
                if t < H - 1:
                    for j in range(o):
                        probs = self._bin_probs(dec.logits, j)
                        if opts["obs_decoding"] == "argmax":
                            tok = probs.argmax(dim=-1)
                        elif opts["obs_decoding"] == "sample":
                            tok = self._sample(probs, generator)
                        else:
                            raise ValueError(f"obs_decoding must be 'argmax' or 'sample', got {opts['obs_decoding']!r}")
                        dec.append(tok + j * N)
            top = torch.arange(E, device=dev) * W                                  # rows are sorted: each env's best first
            seqs = dec.tokens[top, -H * D:].reshape(E, H, D).cpu().numpy()
            top_scores = scores[top].tolist()
        return [self._to_plan(seqs[e], top_scores[e]) for e in range(E)]

    def _to_plan(self, tokens: np.ndarray, score: float) -> Plan:
        o, a = self.obs_dim, self.act_dim
        vals = self.discretizer.decode(tokens)
        acts = vals[:, o:o + a]
        if self.discrete:
            first = np.asarray(int(round(acts[0, 0])), np.int64)
        else:
            first = acts[0].astype(np.float32)
            if self.config.action_low is not None and self.config.action_high is not None:
                first = np.clip(first, self.config.action_low, self.config.action_high).astype(np.float32)
        return Plan(vals[:, :o], acts, vals[:, o + a], vals[:, o + a + 1], first, float(score), tokens)

    # ---- open-loop prediction --------------------------------------------------------------------
    def predict_trajectory(self, context_tokens, actions, decoding: str = "argmax", use_cache: bool = True) -> Prediction:
        """Teacher-forced actions [B, H, act_dim] (or [H, act_dim]) after context_tokens [B, L] (or [L]) that
        end with the current observation -> predicted next observations, rewards and values. The tokens
        fed back are argmax bins; `decoding` "argmax" reports their centres, "mean" the expected value.
        Beyond the model's window the oldest transitions are cropped (and the cache rebuilt)."""
        dev = self.head_w.device
        ctx = torch.as_tensor(np.asarray(context_tokens), dtype=torch.long, device=dev)
        acts = np.asarray(actions, np.float64)
        if ctx.ndim == 1:
            ctx, acts = ctx[None], acts.reshape(1, -1, self.act_dim)
        acts = acts.reshape(len(ctx), -1, self.act_dim)
        o, a, D, N = self.obs_dim, self.act_dim, self.D, self.N
        if decoding not in ("argmax", "mean"):
            raise ValueError(f"decoding must be 'argmax' or 'mean', got {decoding!r}")
        if ctx.shape[1] % D != o:
            raise ValueError(f"context must be whole transitions plus the current observation ({o} tokens); got {ctx.shape[1]}")
        B, H = acts.shape[:2]
        act_tok = torch.from_numpy(self.discretizer.encode(acts, o)).to(dev)
        out_tok = np.zeros((B, H, D), np.int64)
        out_val = np.zeros((B, H, D))
        with self._inference():
            dec = _Decoder(self, ctx, use_cache)
            for h in range(H):
                for j in range(a):
                    dec.append(act_tok[:, h, j])
                for j in list(range(o + a, D)) + list(range(o)):      # reward, value, then next obs
                    probs = self._bin_probs(dec.logits, j)
                    tok = probs.argmax(dim=-1) + j * N
                    out_tok[:, h, j] = tok.cpu().numpy()
                    out_val[:, h, j] = self._expect(probs, j, decoding).cpu().numpy()
                    dec.append(tok, need_logits=not (h == H - 1 and j == o - 1))
        out_tok[:, :, o:o + a] = act_tok.cpu().numpy()
        if decoding == "argmax":   # exact float64 bin centres
            out_val = self.discretizer.decode(out_tok)
        return Prediction(out_val[:, :, :o], out_val[:, :, o + a], out_val[:, :, o + a + 1], out_tok)

    # ---- acting ----------------------------------------------------------------------------------
    def start_rollout(self, n_envs: int, target_returns: np.ndarray | None = None, sample: bool = True,
                      seed: int = 0, **plan_options) -> "TTRollout":
        """Plan every step with beam search (batched over envs). target_returns are ignored (TT plans for
        value); sample=False takes the model's most likely actions (greedy: nothing left to search)."""
        use_cache = plan_options.pop("use_cache", True)
        if not sample:
            plan_options.setdefault("action_proposal", "argmax")
        return TTRollout(self, n_envs, seed, self._plan_options(**plan_options), use_cache)


class _Decoder:
    """Next-token logits for a batch of growing token sequences, with a KV cache or by a full forward
    pass per token (the naive twin; identical results). The model sees at most block_size tokens:
    longer sequences are cropped by whole transitions from the left and the cache is rebuilt, since a
    slid cache is not exact (DESIGN.md)."""

    def __init__(self, model: TrajectoryTransformer, tokens: torch.Tensor, use_cache: bool):
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


class TTRollout:
    """Rollout protocol for TT: plan from the last K - H transitions and the current obs, act with the
    plan's first action. The last plans stay readable in `plans` (for the dashboard)."""

    def __init__(self, agent: TrajectoryTransformer, n_envs: int, seed: int, options: dict, use_cache: bool = True):
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
