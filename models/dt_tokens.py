"""The Decision Transformer's tokens for imported architectures (DTHparams' switches; models/decision_transformer.py
calls these): DTI's evaluation window and its pads, the time embedding (table, linear or the window's first step),
the token position table, the activation run a prepended pad sees the caller's steps through, and last_state_only
by the whole forward for models whose tokens a partial forward would not compute (models/dt_partial.py).
"""
from __future__ import annotations

import torch

from .activations import ActivationRun


def dti_window(model, states, actions, returns_to_go, timesteps, attention_mask):
    """DTI's evaluation window (src/decision_transformer/utils.py `initialize_padding_inputs`, eval.py
    `evaluate_dt_agent`): always K steps, left-padded with zero states, the pad action (row n_actions of DTI's
    action embedding), the episode's first return-to-go and timestep 0, with no attention mask. Steps of a
    shorter window are prepended as pads; steps with attention_mask 0 become pads. -> the K-step inputs and
    pads [B, K] bool."""
    B, L = states.shape[:2]
    K = model.config.context_length
    if L > K:
        raise ValueError(f"a DTI model reads at most its {K} steps (n_ctx = {3 * K - 1} tokens), got {L}.")
    mask = (torch.ones(B, L, dtype=torch.bool, device=states.device) if attention_mask is None
            else attention_mask.bool())
    if L < K:
        def pad(x):
            return torch.cat([torch.zeros(B, K - L, *x.shape[2:], dtype=x.dtype, device=x.device), x], 1)

        states, actions, returns_to_go, timesteps, mask = (pad(states), pad(actions), pad(returns_to_go),
                                                           pad(timesteps), pad(mask))
    pads = ~mask
    first = mask.int().argmax(1)   # the first real step (left padding)
    r0 = returns_to_go.gather(1, first.view(B, 1, *([1] * (returns_to_go.dim() - 2))).expand(
        B, 1, *returns_to_go.shape[2:]))
    p = pads.view(B, K, *([1] * (states.dim() - 2)))
    states = torch.where(p, torch.zeros((), dtype=states.dtype, device=states.device), states)
    returns_to_go = torch.where(pads.view(B, K, *([1] * (returns_to_go.dim() - 2))), r0, returns_to_go)
    timesteps = torch.where(pads, torch.zeros((), dtype=timesteps.dtype, device=timesteps.device), timesteps)
    return states, actions, returns_to_go, timesteps, pads


def first_real(x: torch.Tensor, attention_mask) -> torch.Tensor:
    """[B] index of each window's first real step (0 without a mask)."""
    if attention_mask is None:
        return torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    return attention_mask.bool().int().argmax(1)


def time_embedding(model, timesteps: torch.Tensor, attention_mask) -> torch.Tensor:
    """The time embedding added to each step's tokens [B, L, H]."""
    kind = model.cfg.time_embedding
    if kind == "linear":   # DTI: Linear(1, H) of the timestep as a float
        return model.embed_timestep(model._timesteps(timesteps.long()).float()[..., None])
    ts = model.embed_timestep(model._timesteps(timesteps.long()))
    if kind == "window_start":   # DT paper, Atari: global_pos_emb at the window's first (real) step, every token
        first = first_real(timesteps, attention_mask)
        ts = ts.gather(1, first.view(-1, 1, 1).expand(-1, 1, ts.shape[-1])).expand_as(ts)
    return ts


def token_positions(model, B: int, L: int, attention_mask, device) -> torch.Tensor:
    """The token position table's rows for a window [B, 3L, H]: counted from the window's first real step (pads,
    masked as keys, take row 0), so a left-padded window reads the rows a short window would."""
    idx = torch.arange(3 * L, device=device)[None].expand(B, -1)
    if attention_mask is not None:
        idx = (idx - 3 * first_real(idx, attention_mask)[:, None]).clamp(min=0)
    return model.wpe_tokens[idx]


class CallersSteps:
    """An ActivationRun seen through the steps a DTI window prepends (`dti_window`): names are recorded and
    intervened on over the caller's L steps (the last 3L tokens; attention patterns over those queries and keys, so
    a row sums to less than 1 by the share DTI's prepended pads took), the pads computed but not shown."""

    __slots__ = ("run", "steps")

    def __init__(self, run: ActivationRun, steps: int):
        self.run, self.steps = run, steps

    def wants(self, name: str) -> bool:
        return self.run.wants(name)

    def __call__(self, name: str, value: torch.Tensor) -> torch.Tensor:
        if not self.run.wants(name):
            return value
        if name.startswith("embed."):
            index = (slice(None), slice(self.steps, None))
        elif name.endswith("attn.pattern"):
            index = (slice(None), slice(None), slice(3 * self.steps, None), slice(3 * self.steps, None))
        else:
            index = (slice(None), slice(3 * self.steps, None))
        part = value[index]
        new = self.run(name, part)
        if new is part:
            return value
        value = value.clone()
        value[index] = new
        return value


def last_state_whole(model, run: ActivationRun, inputs: dict):
    """last_state_only for models without partial forwards: the whole forward, its outputs and activations cut to
    what the partial forward returns (the last s token's; the tokens before it in earlier blocks).
    -> (DTOutput, cache)."""
    out = model.forward(**inputs, activations=run)
    last = f"blocks.{model.n_layer - 1}."
    for name, t in list(run.cache.items()):
        if name.startswith("head."):
            run.cache[name] = t[:, -1:]
        elif name.endswith("attn.pattern"):
            q = slice(t.shape[2] - 2, t.shape[2] - 1) if name.startswith(last) else slice(0, t.shape[2] - 1)
            run.cache[name] = t[:, :, q, :t.shape[3] - 1]
        elif name.startswith("ln_final.") or (name.startswith(last) and not name.endswith("resid_pre")):
            run.cache[name] = t[:, t.shape[1] - 2:t.shape[1] - 1]
        elif name.startswith("blocks."):
            run.cache[name] = t[:, :t.shape[1] - 1]
    out.action_preds, out.value_preds = out.action_preds[:, -1:], out.value_preds[:, -1:]
    out.return_preds = out.state_preds = out.attentions = out.hidden_states = None
    return out, run.cache
