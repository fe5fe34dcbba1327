"""The DT paper's Atari model, re-implemented from its source for tests: kzl/decision-transformer
`atari/mingpt/model_atari.py` (class `GPT`, minGPT's `Block` / `CausalSelfAttention`), read at commit 0dd62893.

Standalone (torch only). Module and parameter names are the source's, so `torch.save(model.state_dict())` writes the
bare state dict that code saves, which models/dt_atari_import.py reads. Only `model_type="reward_conditioned"` (the
DT; "naive" is the paper's behaviour-cloning ablation and has the same tensors). Dropout is left out: the forward is
the eval-mode one.

What the source does, and where it happens:
- states: (B, T, 4*84*84) floats in [0, 1]. The model does not scale: the caller divides by 255 (the training
  dataset's `states / 255.` in run_dt_atari.py, the eval Env's `_get_state().div_(255)` in trainer_atari.py);
  `forward` reshapes to (-1, 4, 84, 84), a hard-coded frame size;
- state_encoder: Conv(4->32, 8, stride 4) ReLU Conv(32->64, 4, stride 2) ReLU Conv(64->64, 3, stride 1) ReLU
  Flatten Linear(3136 = 64*7*7 -> n_embd) Tanh;
- return-to-go: `ret_emb` = Linear(1 -> n_embd) + Tanh on the raw return (no scaling: eval passes the target,
  e.g. 90 for Breakout, as a long tensor);
- actions: `action_embeddings` = Embedding(vocab_size, n_embd) + Tanh; `tok_emb` exists but is never used;
- tokens (R_1, s_1, a_1, R_2, s_2, a_2, ...): 3T tokens with `targets` given (training), 3T - 1 without (acting:
  the last step has no action yet, and the action embeddings used are the last T - 1 of those given);
  at the very first step of an episode `actions=None`: tokens (R_1, s_1) only;
- positions: `global_pos_emb[timesteps]` -- ONE timestep per window, (B, 1, 1), broadcast to every token -- plus
  `pos_emb[:, :n_tokens]`, the token's index inside the window. Training passes the window's first timestep
  (`self.timesteps[idx:idx+1]`), the eval loop the current step `min(j, max_timestep)`;
- block size = 3 * context length; `pos_emb` has block_size + 1 rows, the causal mask (block_size + 1)^2;
- minGPT blocks: x + attn(ln1(x)), then x + mlp(ln2(x)), mlp = Linear(n, 4n) GELU (erf) Linear(4n, n);
  attention with separate key / query / value Linears and `proj`;
- ln_f, then `head` = Linear(n_embd, vocab_size, bias=False);
- which token predicts the action: logits at the state tokens (`logits[:, 1::3]`; `logits[:, 1:]` when
  actions=None), one row per step.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int):
        super().__init__()
        self.key, self.query, self.value = (nn.Linear(n_embd, n_embd) for _ in range(3))
        self.proj = nn.Linear(n_embd, n_embd)
        # persistent, as in the source: it is in the saved state dict
        self.register_buffer("mask", torch.tril(torch.ones(block_size + 1, block_size + 1)).view(1, 1, block_size + 1, block_size + 1))
        self.n_head = n_head

    def forward(self, x):
        B, T, C = x.shape
        heads = lambda t: t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # noqa: E731
        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf")).softmax(-1)
        return self.proj((att @ v).transpose(1, 2).reshape(B, T, C))


class _GELU(nn.Module):   # the source's GELU module: F.gelu, exact (erf) form; no parameters
    def forward(self, x):
        return F.gelu(x)


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size)
        # indices 0 and 2 carry weights (mlp.0, mlp.2), 3 is the source's Dropout
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), _GELU(), nn.Linear(4 * n_embd, n_embd), nn.Identity())

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_layer: int = 6, n_head: int = 8, n_embd: int = 128,
                 max_timestep: int = 2654):
        super().__init__()
        self.vocab_size, self.block_size, self.n_embd = vocab_size, block_size, n_embd
        self.tok_emb = nn.Embedding(vocab_size, n_embd)   # unused by forward, saved all the same
        self.pos_emb = nn.Parameter(torch.zeros(1, block_size + 1, n_embd))
        self.global_pos_emb = nn.Parameter(torch.zeros(1, max_timestep + 1, n_embd))
        self.blocks = nn.Sequential(*[Block(n_embd, n_head, block_size) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.state_encoder = nn.Sequential(nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2),
                                           nn.ReLU(), nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(),
                                           nn.Linear(3136, n_embd), nn.Tanh())
        self.ret_emb = nn.Sequential(nn.Linear(1, n_embd), nn.Tanh())
        self.action_embeddings = nn.Sequential(nn.Embedding(vocab_size, n_embd), nn.Tanh())

    def forward(self, states, actions, targets=None, rtgs=None, timesteps=None):
        """states (B, T, 4*84*84) in [0, 1]; actions (B, T', 1) long or None; rtgs (B, T, 1); timesteps (B, 1, 1)
        long. Returns the action logits (B, T, vocab) read at the state tokens (B, 1, vocab) when actions is None."""
        B, T = states.shape[:2]
        s = self.state_encoder(states.reshape(-1, 4, 84, 84).float()).reshape(B, T, self.n_embd)
        r = self.ret_emb(rtgs.float())
        if actions is None:   # first step of an episode: (R_1, s_1)
            tokens = torch.zeros(B, 2 * T, self.n_embd)
            tokens[:, ::2], tokens[:, 1::2] = r, s
        else:
            short = int(targets is None)
            a = self.action_embeddings(actions.long().squeeze(-1))
            tokens = torch.zeros(B, 3 * T - short, self.n_embd)
            tokens[:, ::3], tokens[:, 1::3] = r, s
            tokens[:, 2::3] = a[:, -T + short:]
        index = timesteps.long().repeat_interleave(self.n_embd, dim=-1)          # (B, 1, n_embd)
        glob = torch.gather(self.global_pos_emb.repeat_interleave(B, dim=0), 1, index)   # (B, 1, n_embd)
        x = tokens + glob + self.pos_emb[:, :tokens.shape[1]]
        logits = self.head(self.ln_f(self.blocks(x)))
        return logits[:, 1:] if actions is None else logits[:, 1::3]


def randomize(model: GPT, seed: int, scale: float = 0.3) -> GPT:
    """Every parameter drawn from N(0, scale^2) (LayerNorm weights around 1), so any mix-up of tensors shows in
    the outputs; the causal masks stay as they are."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale + (1.0 if name.endswith(("ln1.weight", "ln2.weight", "ln_f.weight")) else 0.0))
    return model.eval()
