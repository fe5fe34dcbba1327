"""Trajectory Transformer (Janner, Li & Levine 2021, arXiv 2106.02039): a GPT over discretized transitions.

Every transition becomes D = obs_dim + act_dim + 2 tokens [obs..., act..., reward, value], each dimension
quantized into N quantile bins (models/discretizer.py; token = bin + dim * N). Values are discounted
returns-to-go V_t = sum_{k>=t} discount^(k-t) r_k within the episode. Observations, actions and
rewards are tokenized RAW (not normalised by state mean/std): quantile bins do not care about scale,
and decoded predictions then come back in the units the dashboard shows.

Layout: models/tt_tokens.py (values, transitions, token encoding), this module (the GPT: embeddings,
blocks, per-dimension heads, forward / run_with_cache, loss, sample_batch, card) and models/tt_planner.py
(beam search with the KV cache, open-loop prediction, the planning rollout; its module docstring lists the
decoding options). The methods below that plan or encode delegate to those modules.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import tt_planner, tt_tokens
from .activations import ActivationRun, layer_norm
from .base import Agent, AgentConfig, gpt2_init
from .block import Block, allowed_keys, run_blocks
from .configs import TTConfig
from .discretizer import QuantileDiscretizer
from .hparams import defaults, resolve
from .tt_planner import PLAN_OPTIONS, Plan, Prediction, TTRollout  # noqa: F401 - PLAN_OPTIONS re-exported
from .tt_tokens import dataset_transitions, discounted_values  # noqa: F401 - re-exported
from .windows import TrainingData


@dataclass
class TokenizedData(TrainingData):
    """TrainingData with every step as TT tokens [N, D] (TrajectoryTransformer.prepare_training)."""

    tokens: np.ndarray = None

DEFAULTS = defaults("tt")   # models/hparams.py: TTHparams holds every default, with what each means


@dataclass
class TTOutput:
    logits: torch.Tensor                  # [B, T, N + 1]: position i scores the N bins (+ stop) of token i + 1's dimension
    attentions: tuple | None = None       # per layer [B, heads, T, past + T]
    past_key_values: tuple | None = None  # per layer (keys, values) [B, heads, past + T, head_dim]


# TT checkpoints name the blocks' tensors as the Trajectory Transformer did before the shared block (models/block.py):
# on disk blocks.{i}.ln1, attn.qkv, attn.proj, ln2, mlp.0, mlp.2 are blocks.{i}.ln_1, attn.c_attn, attn.c_proj, ln_2,
# mlp.c_fc, mlp.c_proj in the model. state_dict() writes the disk names and load_state_dict() reads them (this table is
# the only place that knows both), so every TT checkpoint, shipped or not, loads as it is, and saves the same way.
_DISK_NAMES = {"ln_1": "ln1", "ln_2": "ln2", "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj", "mlp.c_fc": "mlp.0",
               "mlp.c_proj": "mlp.2"}
_FROM_DISK = {v: k for k, v in _DISK_NAMES.items()}


def _rename_blocks(state: dict, prefix: str, table: dict) -> None:
    """Rename `{prefix}blocks.{i}.{module}.{weight|bias}` keys of state in place by table (module -> module), in order."""
    head = prefix + "blocks."
    renamed = []
    for key, value in state.items():
        if key.startswith(head):
            layer, _, rest = key[len(head):].partition(".")
            module, _, leaf = rest.rpartition(".")
            key = f"{head}{layer}.{table.get(module, module)}.{leaf}"
        renamed.append((key, value))
    state.clear()
    state.update(renamed)


def _to_disk(module, state, prefix, local_metadata) -> None:
    _rename_blocks(state, prefix, _DISK_NAMES)


def _from_disk(module, state, prefix, *args) -> None:
    _rename_blocks(state, prefix, _FROM_DISK)


class TrajectoryTransformer(Agent):
    """TT agent. Build one for training with `TrajectoryTransformer.for_dataset(config, dataset)`.

    Named activations (`run_with_cache(tokens or {"tokens": ..., "past_key_values": ...})`,
    models/activations.py). B sequences of T tokens (the new ones when a KV cache is passed; T_keys = past + T),
    C = hidden, h = heads, hd = C / h, i = block 0..n_layer-1:
      embed.tokens             [B, T, C]   token embedding (value tokens: the shared `value_emb`) + position
                               embedding, before dropout
      blocks.{i}.resid_pre     [B, T, C]   the residual stream into block i
      blocks.{i}.attn.pattern  [B, h, T, T_keys]  attention weights after the softmax (rows: queries)
      blocks.{i}.attn.head_out [B, T, h, C]  head k's contribution after the output projection:
                               z_k @ attn.W_O[k] (no bias), so
                               sum over heads + attn.b_O == attn.out (eval mode). Computed only when
                               requested or intervened on.
      blocks.{i}.attn.out      [B, T, C]   the attention block's output (c_proj incl. bias, after dropout)
      blocks.{i}.resid_mid     [B, T, C]   resid_pre + attn.out
      blocks.{i}.mlp.hidden    [B, T, 4C]  the MLP's GELU activations
      blocks.{i}.mlp.out       [B, T, C]   the MLP block's output
      blocks.{i}.resid_post    [B, T, C]   resid_mid + mlp.out
      ln_final.scale           [B, T, 1]   the final layer norm's per-token 1 / sqrt(var + eps)
      ln_final.out             [B, T, C]   (resid_post - mean) * scale * ln_final.weight + ln_final.bias (= final_hidden)
      head.logits              [B, T, N + 1]  position p's scores over the bins (+ stop) of token p + 1's dimension
    """

    family = "a Trajectory Transformer"
    capabilities = frozenset({"attention", "kv_cache", "planning", "dynamics", "state", "value", "tokens", "acts"})

    def __init__(self, config: AgentConfig):
        super().__init__(config)
        cfg, hp = TTConfig.build(config)
        config.hparams = hp                       # the resolved sizes are what the checkpoint records
        self.cfg = cfg
        if cfg.discretizer is None:
            raise ValueError("a TT config needs hparams['discretizer']: build the agent with "
                             "TrajectoryTransformer.for_dataset(config, dataset), or load a checkpoint")
        self.discretizer = QuantileDiscretizer.from_dict(cfg.discretizer)
        self.N = int(cfg.n_bins)
        self.D = config.obs_dim + config.act_dim + 2
        if (self.discretizer.dim, self.discretizer.n_bins) != (self.D, self.N):
            raise ValueError(f"discretizer has {self.discretizer.dim} dims x {self.discretizer.n_bins} bins; "
                             f"the model needs {self.D} x {self.N}")
        self.stop_token, self.pad_token = self.N * self.D, self.N * self.D + 1
        self.block_size = config.context_length * self.D - 1     # inputs of a K-transition window
        C = int(cfg.hidden)
        self.tok_emb = nn.Embedding(self.N * self.D + 2, C)
        # Past values are unknown when acting (the reference fed a placeholder the model never trained on);
        # every value position reads this one vector instead, so training and acting see the same inputs.
        self.value_emb = nn.Parameter(torch.zeros(C))
        self.pos_emb = nn.Parameter(torch.zeros(1, self.block_size, C))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg.block(), i) for i in range(int(cfg.n_layer))])
        self.ln_f = nn.LayerNorm(C)
        # one head per dimension (the reference's EinLinear): N bins + stop
        self.head_w = nn.Parameter(torch.randn(self.D, C, self.N + 1) * 0.02)
        self.head_b = nn.Parameter(torch.zeros(self.D, self.N + 1))
        self.apply(gpt2_init)
        self.register_buffer("centres", torch.tensor(self.discretizer.centres, dtype=torch.float32), persistent=False)
        self.register_buffer("seen_bins", torch.tensor(self.discretizer.counts > 0), persistent=False)
        w = [1.0] * config.obs_dim + [float(cfg.action_weight)] * config.act_dim + [float(cfg.reward_weight), float(cfg.value_weight)]
        self.register_buffer("dim_weights", torch.tensor(w), persistent=False)
        self.register_state_dict_post_hook(_to_disk)          # checkpoints keep their tensor names (_DISK_NAMES)
        self.register_load_state_dict_pre_hook(_from_disk)

    @classmethod
    def for_dataset(cls, config: AgentConfig, dataset) -> "TrajectoryTransformer":
        """Fit the discretizer on the dataset's raw [obs, act, reward, value] and build the model."""
        if (dataset.obs_dim, dataset.act_dim, dataset.discrete) != (config.obs_dim, config.act_dim, config.discrete):
            raise ValueError(f"dataset has obs_dim {dataset.obs_dim}, act_dim {dataset.act_dim}, discrete {dataset.discrete}; "
                             f"the config says {config.obs_dim}, {config.act_dim}, {config.discrete}")
        hp = resolve("tt", config.hparams)   # every default; a typo is an error
        data = tt_tokens.dataset_transitions(dataset, hp["discount"])
        integer = [config.obs_dim] if config.discrete else []
        disc = QuantileDiscretizer.fit(data, int(hp["n_bins"]), integer_dims=integer)
        hp["discretizer"] = disc.to_dict()
        hp["obs_quantization_floor"] = disc.reconstruction_error(dataset.observations)
        config.hparams = hp
        return cls(config)

    # ---- facts -----------------------------------------------------------------------------------
    @property
    def hp(self) -> dict:
        """The checkpoint's hparams dict, for callers that read it; the model reads the typed `cfg` (TTConfig)."""
        return self.config.hparams

    @property
    def n_layer(self) -> int:
        return len(self.blocks)

    @property
    def n_head(self) -> int:
        return int(self.cfg.n_head)

    def card(self) -> dict:
        cfg = self.cfg
        return {**super().card(), "n_bins": self.N, "tokens_per_transition": self.D,
                "horizon_cap": (self.block_size + 1) // self.D, "beam_width": cfg.beam_width,
                "horizon": min(int(cfg.horizon), self.context_length), "discount": cfg.discount,
                "obs_quantization_floor": cfg.obs_quantization_floor}

    # ---- weights (TransformerLens names; views of the parameters: read them, never write) -----------------
    @property
    def ln_final(self) -> nn.LayerNorm:
        """The final layer norm the heads read (`blocks[i].attn.W_Q` ...: models/block.py)."""
        return self.ln_f

    @property
    def W_U(self) -> torch.Tensor:
        """[D, hidden, N + 1] one unembedding per dimension: position p scores dimension d = (p + 1) % D's bins (+ stop)
        as ln_final(resid) @ W_U[d] + b_U[d]."""
        return self.head_w

    @property
    def b_U(self) -> torch.Tensor:
        """[D, N + 1]"""
        return self.head_b

    def token_dims(self, positions: torch.Tensor) -> torch.Tensor:
        return positions % self.D

    # ---- forward ---------------------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, output_attentions: bool = False, past_key_values=None,
                use_cache: bool = False, activations: ActivationRun | None = None) -> TTOutput:
        """tokens [B, T] whose first token is obs dim 0 of a transition (counting the cached ones).
        activations: the per-call record/intervene run of `run_with_cache` (None: the plain forward)."""
        h, past_len, attentions, presents = self._trunk(tokens, past_key_values, activations)
        logits = self._heads(h, past_len)
        if activations is not None:
            logits = activations("head.logits", logits)
        return TTOutput(logits, tuple(attentions) if output_attentions else None,
                        tuple(presents) if use_cache else None)

    def activation_names(self) -> list[str]:
        names = ["embed.tokens"]
        for i in range(len(self.blocks)):
            p = f"blocks.{i}."
            names += [p + n for n in ("resid_pre", "attn.pattern", "attn.head_out", "attn.out", "resid_mid",
                                      "mlp.hidden", "mlp.out", "resid_post")]
        return names + ["ln_final.scale", "ln_final.out", "head.logits"]

    def final_hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """The final layer norm's output [B, T, C] (what the heads read), without touching the module:
        analyses call this instead of hooking ln_f, so a shared agent is never mutated."""
        return self._trunk(tokens, None)[0]

    def _trunk(self, tokens: torch.Tensor, past_key_values, run: ActivationRun | None = None):
        B, T = tokens.shape
        past_len = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        if past_len + T > self.block_size:
            raise ValueError(f"{past_len + T} tokens exceed the model's window of {self.block_size} "
                             f"({self.context_length} transitions of {self.D} tokens, minus one)")
        pos = torch.arange(past_len, past_len + T, device=tokens.device)
        x = self.tok_emb(tokens)
        x = torch.where((self.token_dims(pos) == self.D - 1)[None, :, None], self.value_emb, x)
        x = x + self.pos_emb[0, pos]
        if run is not None:
            x = run("embed.tokens", x)
        x = self.drop(x)
        allowed = allowed_keys(pos, torch.arange(past_len + T, device=tokens.device))   # causal
        x, attentions, presents, _ = run_blocks(self.blocks, x, allowed, past_key_values, run)
        return layer_norm(self.ln_f, x, run, "ln_final."), past_len, attentions, presents

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

    # ---- tokens (models/tt_tokens.py) -----------------------------------------------------------
    def encode_transitions(self, observations, actions, rewards, values=None) -> np.ndarray:
        """Raw arrays [T, ...] -> tokens [T, D]; unknown values (acting) get a placeholder the model ignores."""
        return tt_tokens.encode_transitions(self.discretizer, self.obs_dim, self.act_dim, observations, actions, rewards, values)

    def context_tokens(self, observations, actions=None, rewards=None, max_transitions: int | None = None) -> np.ndarray:
        """History obs [t+1, obs_dim] (the last is the current one), actions [t, act_dim], rewards [t]
        -> the token prefix [p * D + obs_dim] of the last p = min(t, max_transitions) transitions."""
        return tt_tokens.context_tokens(self.discretizer, self.obs_dim, self.act_dim, observations, actions, rewards,
                                        max_transitions)

    def tokenize(self, dataset) -> np.ndarray:
        """Every step of a Dataset as tokens [N, D] (true discounted values)."""
        return tt_tokens.tokenize(self.discretizer, dataset, self.cfg.discount)

    # ---- training --------------------------------------------------------------------------------
    def prepare_training(self, data: TrainingData) -> "TokenizedData":
        """The training set's tokens, made once per training run (sample_batch tokenizes a plain TrainingData per call)."""
        return TokenizedData(**{f.name: getattr(data, f.name) for f in fields(data)}, tokens=self.tokenize(data.dataset))

    def sample_batch(self, data, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Episodes drawn uniformly, a window of K whole transitions starting at a uniformly drawn step.

        Past the episode's end a window holds stop tokens (terminated: the model learns to predict the
        stop) or pad tokens (truncated: left out of the loss)."""
        ds = data.dataset
        tokens = data.tokens if isinstance(data, TokenizedData) else self.tokenize(ds)
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

    # ---- planning, open-loop prediction, acting (models/tt_planner.py) --------------------------
    def plan(self, observations, actions=None, rewards=None, *, seed: int = 0, use_cache: bool = True, **options) -> Plan:
        """Beam-search plan from a raw history: observations [t+1, obs_dim] (the last is the current one),
        actions [t, act_dim] and rewards [t] before it. Options: beam_width, horizon, n_expand, discount,
        action_proposal, action_cdf, obs_decoding, value_decoding, value_quantile (defaults from hparams)."""
        return tt_planner.plan(self, observations, actions, rewards, seed=seed, use_cache=use_cache, **options)

    def plan_tokens(self, prefix, *, generator: torch.Generator | None = None, use_cache: bool = True, **options) -> list[Plan]:
        """Beam search for E environments at once. prefix [E, p * D + obs_dim] tokens ending with the
        current observation; longer prefixes keep their last K - horizon transitions."""
        return tt_planner.plan_tokens(self, prefix, generator=generator, use_cache=use_cache, **options)

    def predict_trajectory(self, context_tokens, actions, decoding: str = "argmax", use_cache: bool = True) -> Prediction:
        """Teacher-forced actions [B, H, act_dim] (or [H, act_dim]) after context_tokens [B, L] (or [L]) that
        end with the current observation -> predicted next observations, rewards and values (tt_planner)."""
        return tt_planner.predict_trajectory(self, context_tokens, actions, decoding, use_cache)

    def start_rollout(self, n_envs: int, target_returns: np.ndarray | None = None, sample: bool = True,
                      seed: int = 0, **plan_options) -> TTRollout:
        """Plan every step with beam search (batched over envs). target_returns are ignored (TT plans for
        value); sample=False takes the model's most likely actions (greedy: nothing left to search)."""
        return tt_planner.start_rollout(self, n_envs, target_returns, sample, seed, **plan_options)

    # decoding helpers, kept as methods for callers of the old names
    _expect = tt_planner.expect
    _filter_cdf = staticmethod(tt_planner.filter_cdf)
