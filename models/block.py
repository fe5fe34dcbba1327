"""The one transformer block of seqlens, shared by the Decision Transformer and the Trajectory Transformer (GPT-2,
pre-norm, nanoGPT style), with the mask both build their attention from and the loop that runs a stack of blocks.

Parameters (GPT-2 / Hugging Face names; weights are nn.Linear [out, in]):
  ln_1, attn.c_attn (q, k, v stacked: [3 * d_model, d_model]), attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj.
Weight accessors (TransformerLens names), views of those parameters: nothing is copied, so read them and never
write to them (an analysis must not change a shared agent; ARCHITECTURE.md):
  attn.W_Q, attn.W_K, attn.W_V [heads, d_model, d_head]   q_h = ln_1(x) @ W_Q[h] + b_Q[h]
  attn.b_Q, attn.b_K, attn.b_V [heads, d_head]
  attn.W_O [heads, d_head, d_model], attn.b_O [d_model]     attn.out = sum_h z_h @ W_O[h] + b_O
  mlp.W_in [d_model, d_mlp], mlp.b_in [d_mlp], mlp.W_out [d_mlp, d_model], mlp.b_out [d_model]
Named activations (models/activations.py), under the block's prefix `blocks.{i}.`: resid_pre, attn.pattern,
attn.head_out, attn.out, resid_mid, mlp.hidden, mlp.out, resid_post (the models' docstrings give shapes).

What differs between the two models is configuration (BlockConfig) and the mask they pass:
- the mask `allowed` [B|1, 1, Tq, Tk] bool comes from `allowed_keys`: DT's tokens are 3 per step and its native
  models attend over the last K steps only (banded: the KV cache is then exact); TT's are 1 per "step", unbanded.
- a KV cache: `past` (k, v) per block in, the block's (k, v) out.
- attention scores are divided by sqrt(d_head) (scale_attn_weights, HF's switch) and by i + 1 as well in block i
  (scale_attn_by_inverse_layer_idx, HF's switch, off for native models).
- the MLP's nonlinearity by name (ACTIVATIONS: TT uses "gelu", DT "gelu_new" unless its hparams say otherwise),
  the layer norms' eps, dropout; imported DTI models may have no layer norms (ln_1 / ln_2 the identity) and
  TransformerLens' gated MLP (mlp.c_gate, accessor mlp.W_gate).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .activations import ActivationRun, head_outputs

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0)))),
    "gelu_fast": lambda x: 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}


@dataclass(frozen=True)
class BlockConfig:
    hidden: int                          # d_model
    n_head: int
    n_inner: int                         # d_mlp
    dropout: float = 0.0
    activation: str = "gelu"             # a key of ACTIVATIONS
    layer_norm_eps: float = 1e-5
    scale_attn_weights: bool = True      # scores / sqrt(d_head)
    scale_attn_by_inverse_layer_idx: bool = False   # scores / (i + 1) as well, in block i (HF)
    layer_norm: bool = True              # False: ln_1 / ln_2 are the identity (TransformerLens normalization None)
    gated_mlp: bool = False              # TransformerLens' gated MLP: act(x W_gate) * (x W_in) + b_in

    def __post_init__(self):
        if self.hidden % self.n_head:
            raise ValueError(f"hidden size {self.hidden} must be divisible by n_head {self.n_head}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{self.activation}' (known: {', '.join(ACTIVATIONS)}).")


def allowed_keys(q_pos: torch.Tensor, k_pos: torch.Tensor, band: int | None = None, k_valid: torch.Tensor | None = None,
                 per_step: int = 1) -> torch.Tensor:
    """Which keys each query may attend to: [B|1, 1, Tq, Tk] bool.

    q_pos / k_pos are token positions (DT: 3 * step + 0 R, 1 s, 2 a, per_step 3; TT: the token index). Causal, within
    the last `band` steps (None: no band), only valid (unpadded) keys k_valid [B, Tk]; and every token always sees
    itself, so a fully masked query row (left padding) still has one key and never turns into NaN."""
    qp, kp = q_pos[:, None], k_pos[None, :]
    ok = kp <= qp
    if band is not None:
        ok = ok & (kp // per_step > qp // per_step - band)
    ok = ok[None]
    if k_valid is not None:
        ok = ok & k_valid[:, None, :]
    return (ok | (kp == qp)[None])[:, None]


class NoNorm(nn.Identity):
    """Where a model has no layer norm (DTI's layer_norm None): the identity, read like a LayerNorm by analyses (no
    weight, no bias, `centres` False: its output is its input, not centred)."""

    weight = None
    bias = None
    eps = 0.0
    centres = False


class Attention(nn.Module):
    def __init__(self, cfg: BlockConfig, layer_idx: int):
        super().__init__()
        self.n_head, self.hidden = cfg.n_head, cfg.hidden
        d_head = cfg.hidden // cfg.n_head
        self.divisor = (math.sqrt(d_head) if cfg.scale_attn_weights else 1.0) * \
            (layer_idx + 1 if cfg.scale_attn_by_inverse_layer_idx else 1)
        self.c_attn = nn.Linear(cfg.hidden, 3 * cfg.hidden)
        self.c_proj = nn.Linear(cfg.hidden, cfg.hidden)
        self.attn_dropout = nn.Dropout(cfg.dropout)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def _heads(self, z: torch.Tensor) -> torch.Tensor:
        B, T, C = z.shape
        return z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, heads, T, d_head] of tokens whose normalised input (ln_1's output) is x [B, T, C]."""
        _, k, v = self.c_attn(x).split(self.hidden, dim=2)
        return self._heads(k), self._heads(v)

    def forward(self, x, allowed, past=None, run: ActivationRun | None = None, name: str = ""):
        """x [B, T, C]; allowed [B|1, 1, T, T_past + T] bool; past (k, v) [B, heads, T_past, d_head] or None;
        run / name: the per-call activation run and this layer's name prefix ("blocks.{i}.attn.").
        Returns (output [B, T, C], pattern [B, heads, T, T_past + T], (k, v) with the new tokens')."""
        B, T, C = x.shape
        q, k, v = (self._heads(z) for z in self.c_attn(x).split(self.hidden, dim=2))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        att = (q @ k.transpose(-2, -1)) / self.divisor
        att = att.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
        if run is not None:
            att = run(name + "pattern", att)
        z = (self.attn_dropout(att) @ v).transpose(1, 2)
        out = self.c_proj(z.reshape(B, T, C))
        if run is not None and run.wants(name + "head_out"):
            out = head_outputs(run, name + "head_out", z, self.c_proj, out)
        return self.resid_dropout(out), att, (k, v)

    # ---- weights, TransformerLens names (views) ----------------------------------------------------------
    def _in(self, which: int) -> torch.Tensor:
        C, h = self.hidden, self.n_head
        return self.c_attn.weight[which * C:(which + 1) * C].T.view(C, h, C // h).permute(1, 0, 2)

    W_Q = property(lambda self: self._in(0))
    W_K = property(lambda self: self._in(1))
    W_V = property(lambda self: self._in(2))
    b_Q = property(lambda self: self.c_attn.bias[:self.hidden].view(self.n_head, -1))
    b_K = property(lambda self: self.c_attn.bias[self.hidden:2 * self.hidden].view(self.n_head, -1))
    b_V = property(lambda self: self.c_attn.bias[2 * self.hidden:].view(self.n_head, -1))
    W_O = property(lambda self: self.c_proj.weight.T.view(self.n_head, self.hidden // self.n_head, self.hidden))
    b_O = property(lambda self: self.c_proj.bias)


class MLP(nn.Module):
    def __init__(self, cfg: BlockConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.hidden, cfg.n_inner)
        self.c_proj = nn.Linear(cfg.n_inner, cfg.hidden)
        # TransformerLens' GatedMLP (DTI's gated_mlp): its bias b_in is added after the product, not inside c_fc
        self.c_gate = nn.Linear(cfg.hidden, cfg.n_inner, bias=False) if cfg.gated_mlp else None
        self.act = ACTIVATIONS[cfg.activation]
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, run: ActivationRun | None = None, name: str = ""):
        if self.c_gate is None:
            h = self.act(self.c_fc(x))
        else:
            h = self.act(self.c_gate(x)) * F.linear(x, self.c_fc.weight) + self.c_fc.bias
        if run is not None:
            h = run(name + "hidden", h)
        return self.dropout(self.c_proj(h))

    W_in = property(lambda self: self.c_fc.weight.T)
    W_gate = property(lambda self: None if self.c_gate is None else self.c_gate.weight.T)   # [H, d_mlp] when gated
    b_in = property(lambda self: self.c_fc.bias)
    W_out = property(lambda self: self.c_proj.weight.T)
    b_out = property(lambda self: self.c_proj.bias)


class Block(nn.Module):
    def __init__(self, cfg: BlockConfig, layer_idx: int):
        super().__init__()
        self.prefix = f"blocks.{layer_idx}."
        self.ln_1 = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps) if cfg.layer_norm else NoNorm()
        self.attn = Attention(cfg, layer_idx)
        self.ln_2 = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps) if cfg.layer_norm else NoNorm()
        self.mlp = MLP(cfg)

    def keys_values(self, resid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, heads, T, d_head] of tokens whose resid_pre is resid [B, T, C]: what this block's
        queries see of them."""
        return self.attn.keys_values(self.ln_1(resid))

    def forward(self, x, allowed, past=None, run: ActivationRun | None = None, record_pre: bool = True):
        """-> (resid_post [B, T, C], attention pattern, (k, v)). record_pre=False: resid_pre was recorded by the
        caller (who split the stream into keys-only tokens and queries)."""
        if run is None:
            a, att, kv = self.attn(self.ln_1(x), allowed, past)
            x = x + a
            return x + self.mlp(self.ln_2(x)), att, kv
        p = self.prefix
        if record_pre:
            x = run(p + "resid_pre", x)
        a, att, kv = self.attn(self.ln_1(x), allowed, past, run, p + "attn.")
        a = run(p + "attn.out", a)
        x = run(p + "resid_mid", x + a)
        m = run(p + "mlp.out", self.mlp(self.ln_2(x), run, p + "mlp."))
        return run(p + "resid_post", x + m), att, kv


def run_blocks(blocks, x: torch.Tensor, allowed: torch.Tensor, past=None, run: ActivationRun | None = None):
    """The residual stream x [B, T, C] through every block with one mask (every token a query): the forward of both
    models and each KV-cached step. past: per block (k, v) or None. -> (resid_post of the last block, per block:
    attention patterns, (k, v) including the new tokens, resid_post)."""
    atts, kvs, posts = [], [], []
    for i, block in enumerate(blocks):
        x, att, kv = block(x, allowed, None if past is None else past[i], run)
        atts.append(att)
        kvs.append(kv)
        posts.append(x)
    return x, atts, kvs, posts
