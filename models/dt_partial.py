"""Partial forwards of the Decision Transformer: a suffix of its blocks on a few tokens against cached keys / values.

`suffix_stream` is the one loop behind `DecisionTransformer.run_suffix` (activation patching runs only the blocks and
tokens a patch changes) and `run_with_cache(last_state_only=True)` (only what the last s_t token needs). It differs
from the whole-stream loop (`models.block.run_blocks`: forward, the KV-cached rollout step) in that the token set
changes from block to block (tokens leave the stream as keys only, others join it), so the mask is rebuilt per
block; the whole-stream loop builds one mask for all blocks, which the rollout's hot path keeps.
"""
from __future__ import annotations

import torch

from .activations import ActivationRun
from .base import Agent
from .block import allowed_keys


def keys_values(model: Agent, block: int, resid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Block `block`'s attention keys and values [B, heads, T, hd] of tokens whose resid_pre is resid [B, T, H]
    (ln_1, then c_attn): what its queries see of those tokens (`suffix_stream`'s past)."""
    return model.blocks[block].keys_values(resid)


def suffix_stream(model: Agent, start_block: int, resid: torch.Tensor, pos, past=None, extend=None, queries_from=None,
                  valid: torch.Tensor | None = None, run: ActivationRun | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocks start_block..n_layer-1 of a DT on a few tokens -> (resid_post of the last block's queries [B, Tq, H],
    their positions [Tq]); DecisionTransformer.run_suffix documents the arguments. run: record / intervene on the
    blocks' activations (resid_pre is the stream entering block j, before any token leaves it as a key only)."""
    blocks = model.blocks
    n = len(blocks)
    if not 0 <= start_block <= n:
        raise ValueError(f"start_block must be in 0..{n}, got {start_block}.")
    x = resid
    pos = torch.as_tensor(pos, device=x.device, dtype=torch.long)
    B, band = x.shape[0], model.band

    def entry(seq, s):
        return seq[s] if seq is not None and s < len(seq) else None

    for j in range(start_block, n):
        s, block = j - start_block, blocks[j]
        ext = entry(extend, s)
        if ext is not None:
            e, e_pos = ext
            x = torch.cat([x, e.expand(B, -1, -1)], 1)
            pos = torch.cat([pos, torch.as_tensor(e_pos, device=x.device, dtype=torch.long)])
        if run is not None:
            x = run(block.prefix + "resid_pre", x)
        first = entry(queries_from, s)
        first = (pos[-1] if j == n - 1 else pos[0]) if first is None else first
        n_keys = int((pos < first).sum())
        ks, vs, k_pos = [], [], []
        p = entry(past, s)
        if p is not None:
            ks.append(p[0].expand(B, -1, -1, -1))
            vs.append(p[1].expand(B, -1, -1, -1))
            k_pos.append(torch.as_tensor(p[2], device=x.device, dtype=torch.long))
        if n_keys:
            k, v = block.keys_values(x[:, :n_keys])
            ks.append(k)
            vs.append(v)
            k_pos.append(pos[:n_keys])
        x, pos = x[:, n_keys:], pos[n_keys:]
        k_pos = torch.cat(k_pos + [pos])
        allowed = allowed_keys(pos, k_pos, band, None if valid is None else valid[:, k_pos], per_step=3)
        kv = (torch.cat(ks, 2), torch.cat(vs, 2)) if ks else None
        x, _, _ = block(x, allowed, kv, run, record_pre=False)
    return x, pos
