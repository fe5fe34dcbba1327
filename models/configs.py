"""Typed configs of the two transformers (nanoGPT's GPTConfig): what a model reads, as fields, instead of `hp[...]`.

A checkpoint's config.json keeps its format (AgentConfig with an `hparams` dict; models/hparams.py holds every
default); the model converts it once at build: `DTConfig.build(config)`, `TTConfig.build(config)`. The resolved
`hparams()` dict is what the checkpoint records (and what `agent.hp` still shows to callers that read it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from .base import AgentConfig
from .block import BlockConfig
from .hparams import DTHparams, TTHparams, resolve

TIME_EMBEDDINGS = ("embedding", "linear", "window_start")
POSITION_EMBEDDINGS = ("none", "tokens")
PADDINGS = ("mask", "dti")


@dataclass(kw_only=True)
class DTConfig(DTHparams):
    """Every DTHparams field (n_inner and train_window resolved) plus the facts of the AgentConfig the model uses."""

    obs_dim: int
    action_in: int            # the action embedding's input: one-hot width (discrete) or act_dim
    discrete: bool
    context_length: int       # K
    max_ep_len: int

    @classmethod
    def build(cls, config: AgentConfig) -> "DTConfig":
        if config.kind != "dt":
            raise ValueError(f"DecisionTransformer needs a config of kind 'dt', got '{config.kind}'.")
        hp = resolve("dt", config.hparams)
        hp["n_inner"] = hp["n_inner"] or 4 * hp["hidden"]
        hp["train_window"] = hp["train_window"] or config.context_length
        if config.discrete and not config.n_actions:
            raise ValueError("a discrete-action Decision Transformer needs config.n_actions.")
        if not config.rtg_scale > 0:
            raise ValueError(f"rtg_scale must be positive, got {config.rtg_scale}.")
        if config.context_length < 1:
            raise ValueError(f"context_length must be at least 1, got {config.context_length}.")
        cfg = cls(**hp, obs_dim=config.obs_dim, action_in=config.n_actions if config.discrete else config.act_dim,
                  discrete=config.discrete, context_length=config.context_length, max_ep_len=config.max_ep_len)
        cfg.block()   # checks hidden / n_head and the activation's name
        cfg._check_tokens()
        return cfg

    def _check_tokens(self) -> None:
        """The imported-architecture fields (DTHparams) name known choices and agree with the sizes."""
        from .state_encoders import ENCODERS

        for field, value, known in (("state_encoder", self.state_encoder, ENCODERS),
                                    ("time_embedding", self.time_embedding, TIME_EMBEDDINGS),
                                    ("position_embedding", self.position_embedding, POSITION_EMBEDDINGS),
                                    ("padding", self.padding, PADDINGS)):
            if value not in known:
                raise ValueError(f"unknown {field} {value!r} (known: {', '.join(known)}).")
        if self.obs_shape is not None and math.prod(self.obs_shape) != self.obs_dim:
            raise ValueError(f"obs_shape {list(self.obs_shape)} holds {math.prod(self.obs_shape)} values, "
                             f"not obs_dim {self.obs_dim}.")
        if self.position_embedding == "tokens" and self.positions < 3 * self.context_length:
            raise ValueError(f"a token position table of {self.positions} rows cannot hold a window of "
                             f"{self.context_length} steps ({3 * self.context_length} tokens).")
        if self.padding == "dti" and self.banded:
            raise ValueError("DTI padding needs plain causal attention (banded false).")

    @property
    def shape(self) -> tuple[int, ...]:
        """The observation's own shape (obs_shape, or (obs_dim,))."""
        return tuple(self.obs_shape) if self.obs_shape is not None else (self.obs_dim,)

    @property
    def positions(self) -> int:
        """Rows of the token position table (n_positions, default 3K)."""
        return self.n_positions or 3 * self.context_length

    @property
    def native_tokens(self) -> bool:
        """Tokens as a native model makes them (per-step absolute timestep table, no position table, no tanh, pads
        masked): what the KV-cached rollout step and the partial forwards (models/dt_partial.py) assume."""
        return (self.time_embedding == "embedding" and self.position_embedding == "none" and not self.embed_tanh
                and self.padding == "mask")

    def hparams(self) -> dict:
        """The checkpoint's hparams: every DTHparams field, resolved, in their order."""
        return {f.name: getattr(self, f.name) for f in fields(DTHparams)}

    def block(self) -> BlockConfig:
        return BlockConfig(hidden=self.hidden, n_head=self.n_head, n_inner=self.n_inner, dropout=self.dropout,
                           activation=self.activation, layer_norm_eps=self.layer_norm_eps,
                           scale_attn_weights=self.scale_attn_weights,
                           scale_attn_by_inverse_layer_idx=self.scale_attn_by_inverse_layer_idx,
                           layer_norm=self.layer_norm, gated_mlp=self.gated_mlp)

    @property
    def band(self) -> int | None:
        """Steps a token attends back over (K), or None for plain causal attention (HF / CORL imports, unbanded)."""
        return self.context_length if self.banded else None


@dataclass(kw_only=True)
class TTConfig(TTHparams):
    """Every TTHparams field, the fitted discretizer (and its quantization floor), and the AgentConfig facts used."""

    obs_dim: int
    act_dim: int
    context_length: int       # K transitions per window
    discretizer: dict | None = None                  # QuantileDiscretizer.to_dict(), fitted by for_dataset
    obs_quantization_floor: float | None = None      # decode(encode(s)) error on the training data

    @classmethod
    def build(cls, config: AgentConfig) -> tuple["TTConfig", dict]:
        """-> (the typed config, the resolved hparams dict the checkpoint records)."""
        if config.kind != "tt":
            raise ValueError(f"TrajectoryTransformer needs config.kind 'tt', got {config.kind!r}")
        hp = resolve("tt", config.hparams)   # every default; a typo is an error
        if config.context_length < 1:
            raise ValueError("context_length (transitions per window) must be at least 1")
        cfg = cls(**hp, obs_dim=config.obs_dim, act_dim=config.act_dim, context_length=config.context_length)
        cfg.block()
        return cfg, hp

    def block(self) -> BlockConfig:
        return BlockConfig(hidden=int(self.hidden), n_head=int(self.n_head), n_inner=4 * int(self.hidden),
                           dropout=self.dropout, activation="gelu")
