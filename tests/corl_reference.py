"""CORL's Decision Transformer (tinkoff-ai/CORL, algorithms/offline/dt.py), reproduced for tests only.

The model classes are CORL's structure line for line (its weight init is left out: tests randomise every
weight anyway); `eval_actions` is its eval_rollout's call pattern for one step. models/corl_import.py is
tested for equality with this module.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class TransformerBlock(nn.Module):
    def __init__(self, seq_len: int, embedding_dim: int, num_heads: int, attention_dropout: float,
                 residual_dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.drop = nn.Dropout(residual_dropout)
        self.attention = nn.MultiheadAttention(embedding_dim, num_heads, attention_dropout, batch_first=True)
        self.mlp = nn.Sequential(
            nn.Linear(embedding_dim, 4 * embedding_dim),
            nn.GELU(),
            nn.Linear(4 * embedding_dim, embedding_dim),
            nn.Dropout(residual_dropout),
        )
        # True value indicates that the corresponding position is not allowed to attend
        self.register_buffer("causal_mask", ~torch.tril(torch.ones(seq_len, seq_len)).to(bool))
        self.seq_len = seq_len

    def forward(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        causal_mask = self.causal_mask[: x.shape[1], : x.shape[1]]
        norm_x = self.norm1(x)
        attention_out = self.attention(query=norm_x, key=norm_x, value=norm_x, attn_mask=causal_mask,
                                       key_padding_mask=padding_mask, need_weights=False)[0]
        x = x + self.drop(attention_out)
        x = x + self.mlp(self.norm2(x))
        return x


class DecisionTransformer(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, seq_len: int = 10, episode_len: int = 1000,
                 embedding_dim: int = 128, num_layers: int = 4, num_heads: int = 8, attention_dropout: float = 0.0,
                 residual_dropout: float = 0.0, embedding_dropout: float = 0.0, max_action: float = 1.0):
        super().__init__()
        self.emb_drop = nn.Dropout(embedding_dropout)
        self.emb_norm = nn.LayerNorm(embedding_dim)
        self.out_norm = nn.LayerNorm(embedding_dim)
        # additional seq_len embeddings for padding timesteps
        self.timestep_emb = nn.Embedding(episode_len + seq_len, embedding_dim)
        self.state_emb = nn.Linear(state_dim, embedding_dim)
        self.action_emb = nn.Linear(action_dim, embedding_dim)
        self.return_emb = nn.Linear(1, embedding_dim)
        self.blocks = nn.ModuleList([
            TransformerBlock(seq_len=3 * seq_len, embedding_dim=embedding_dim, num_heads=num_heads,
                             attention_dropout=attention_dropout, residual_dropout=residual_dropout)
            for _ in range(num_layers)
        ])
        self.action_head = nn.Sequential(nn.Linear(embedding_dim, action_dim), nn.Tanh())
        self.seq_len = seq_len
        self.embedding_dim = embedding_dim
        self.state_dim = state_dim
        self.action_dim = action_dim
        self.episode_len = episode_len
        self.max_action = max_action

    def forward(self, states: torch.Tensor, actions: torch.Tensor, returns_to_go: torch.Tensor,
                time_steps: torch.Tensor, padding_mask: Optional[torch.Tensor] = None) -> torch.FloatTensor:
        batch_size, seq_len = states.shape[0], states.shape[1]
        time_emb = self.timestep_emb(time_steps)
        state_emb = self.state_emb(states) + time_emb
        act_emb = self.action_emb(actions) + time_emb
        returns_emb = self.return_emb(returns_to_go.unsqueeze(-1)) + time_emb
        # [batch_size, seq_len * 3, emb_dim], (r_0, s_0, a_0, r_1, s_1, a_1, ...)
        sequence = (torch.stack([returns_emb, state_emb, act_emb], dim=1)
                    .permute(0, 2, 1, 3)
                    .reshape(batch_size, 3 * seq_len, self.embedding_dim))
        if padding_mask is not None:
            padding_mask = (torch.stack([padding_mask, padding_mask, padding_mask], dim=1)
                            .permute(0, 2, 1)
                            .reshape(batch_size, 3 * seq_len))
        out = self.emb_norm(sequence)
        out = self.emb_drop(out)
        for block in self.blocks:
            out = block(out, padding_mask=padding_mask)
        out = self.out_norm(out)
        # predict actions only from state embeddings
        out = self.action_head(out[:, 1::3]) * self.max_action
        return out


@torch.no_grad()
def eval_actions(model: DecisionTransformer, states, actions, returns, time_steps, step: int) -> torch.Tensor:
    """The action CORL's eval_rollout takes at `step`: a forward over the last seq_len steps of the history
    (states normalised, actions raw with a zero placeholder at `step`, returns-to-go scaled, absolute time
    steps), read at the last position. Tensors are [B, T, ...] histories of at least step + 1 steps."""
    sl = slice(max(0, step + 1 - model.seq_len), step + 1)
    return model(states[:, sl], actions[:, sl], returns[:, sl], time_steps[:, sl])[:, -1]
