"""How a Decision Transformer embeds a state: the choice `DTHparams.state_encoder` names.

Each encoder takes states in the observation's own shape [..., *obs_shape] or flattened [..., obs_dim] (the
rollout keeps flat rows) and returns [..., hidden]. Its parameters sit under `embed_state.` in a checkpoint.

- linear: nn.Linear(obs_dim, H) with bias over the flat vector: every native and HF / CORL model (unchanged).
- grid: nn.Linear(obs_dim, H) without bias over the observation flattened in its *own* order (H, W, C) — DTI's
  `state_embedding_type="grid"` (src/models/trajectory_transformer.py, `initialize_state_embedding`: a bias-free
  Linear over prod(observation_space["image"].shape)). DTI flattens "(channel height width)"
  (`get_state_embedding`'s rearrange); models/dti_import.py permutes its weight's columns once, so the weight read
  here is per cell in the observation's layout ([H, h, w, c] after a reshape) and credit on cells needs no reordering.
- atari_conv: the DT paper's Atari encoder (kzl/decision-transformer atari/mingpt/model_atari.py, GPT.state_encoder):
  Conv2d(4, 32, 8, stride 4), ReLU, Conv2d(32, 64, 4, stride 2), ReLU, Conv2d(64, 64, 3, stride 1), ReLU, Flatten,
  Linear(3136, H) over 4x84x84 frame stacks. Its Tanh is the model's `embed_tanh` (applied to every embedding, as
  the paper's ret_emb and action_embeddings also end in Tanh); scaling frames by 1/255 is the agent's state_std.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import xxhash
from torch import nn

ENCODERS = ("linear", "grid", "atari_conv")
ATARI_FRAMES = (4, 84, 84)   # the conv stack's input: 4 stacked 84x84 grey frames (3136 = 64 * 7 * 7 after it)


def _flat(x: torch.Tensor, obs_shape: tuple[int, ...], obs_dim: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """x [..., *obs_shape] or [..., obs_dim] -> (x [N, obs_dim], the leading shape)."""
    n = len(obs_shape)
    if x.dim() >= n and tuple(x.shape[x.dim() - n:]) == tuple(obs_shape):
        lead = tuple(x.shape[:x.dim() - n])
    elif x.shape[-1] == obs_dim:
        lead = tuple(x.shape[:-1])
    else:
        raise ValueError(f"states must end in the observation's shape {tuple(obs_shape)} or its {obs_dim} values, "
                         f"got shape {tuple(x.shape)}.")
    return x.reshape(-1, obs_dim), lead


class FlatLinear(nn.Linear):
    """linear / grid: a Linear over the observation flattened in its own order (a no-op view for flat rows)."""

    def __init__(self, obs_shape: tuple[int, ...], hidden: int, bias: bool):
        super().__init__(math.prod(obs_shape), hidden, bias=bias)
        self.obs_shape = tuple(obs_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.obs_shape)
        if n > 1 and x.dim() >= n and tuple(x.shape[x.dim() - n:]) == self.obs_shape:
            x = x.reshape(*x.shape[:x.dim() - n], self.in_features)
        return super().forward(x)   # flat rows: exactly today's nn.Linear


class AtariConv(nn.Sequential):
    """The DT paper's Atari state encoder without its final Tanh (see the module docstring). Submodule indices
    follow model_atari.py's Sequential (0, 2, 4: convs; 7: the Linear), so its state dict maps by position."""

    def __init__(self, obs_shape: tuple[int, ...], hidden: int):
        if math.prod(obs_shape) != math.prod(ATARI_FRAMES):
            raise ValueError(f"the atari_conv state encoder reads 4x84x84 frame stacks, not observations of shape "
                             f"{tuple(obs_shape)}.")
        super().__init__(nn.Conv2d(4, 32, 8, stride=4, padding=0), nn.ReLU(),
                         nn.Conv2d(32, 64, 4, stride=2, padding=0), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, stride=1, padding=0), nn.ReLU(),
                         nn.Flatten(), nn.Linear(3136, hidden))
        self.obs_shape, self.hidden = tuple(obs_shape), hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat, lead = _flat(x, self.obs_shape, math.prod(ATARI_FRAMES))
        flat = flat.float()
        if flat.requires_grad or len(flat) < 2:   # credit on pixels: every window's own frames get their gradient
            return self._encode(flat).reshape(*lead, self.hidden)
        _, first, inverse = distinct_rows(flat)
        if len(first) == len(flat):   # distinct already (frames gathered once each): no copy of every frame
            return self._encode(flat).reshape(*lead, self.hidden)
        return self._encode(flat[first])[inverse].reshape(*lead, self.hidden)

    def _encode(self, flat: torch.Tensor) -> torch.Tensor:
        """[N, 28224] -> [N, H], ENCODE_ROWS frames at a time (bounded activations: 32x20x20 floats a frame)."""
        if len(flat) <= ENCODE_ROWS:
            return super().forward(flat.reshape(-1, *ATARI_FRAMES).contiguous())
        return torch.cat([super(AtariConv, self).forward(flat[i:i + ENCODE_ROWS].reshape(-1, *ATARI_FRAMES).contiguous())
                          for i in range(0, len(flat), ENCODE_ROWS)])


ENCODE_ROWS = 512   # frames through the conv stack at once


def distinct_rows(flat: torch.Tensor) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """(digests, first, inverse): rows `first` (their digests `digests`) of `flat` [N, D] are distinct and flat[first][inverse] equals flat. Windows of
    one episode share all but one frame stack (a window of K steps per step: K-fold repeats), so the conv stack runs
    once per distinct frame. Rows are told apart by the xxh3_128 of their bytes (10 GB/s; an accidental collision of
    128 bits is negligible, and equal rows always share a digest, so no frame is ever merged with another by chance
    of rounding). A projection check with an exact comparison per row cost 6x more (it reads every row twice)."""
    rows = flat.detach().contiguous().cpu().numpy()
    keys = np.array([xxhash.xxh3_128_digest(r) for r in rows.view(np.uint8).reshape(len(rows), -1)], dtype="S16")
    distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first)   # the distinct rows in their first appearance's order: all-distinct rows stay as given
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return distinct[order], torch.from_numpy(first[order]), torch.from_numpy(rank[inverse.reshape(-1)])


def make_state_encoder(kind: str, obs_shape: tuple[int, ...], hidden: int) -> nn.Module:
    if kind == "linear":
        return FlatLinear(obs_shape, hidden, bias=True)
    if kind == "grid":
        return FlatLinear(obs_shape, hidden, bias=False)
    if kind == "atari_conv":
        return AtariConv(obs_shape, hidden)
    raise ValueError(f"unknown state encoder {kind!r} (known: {', '.join(ENCODERS)}).")
