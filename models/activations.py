"""Named activations, cached and intervened on per call (the TransformerLens idea, on our own models).

`agent.run_with_cache(inputs, names=None, interventions=None)` runs the agent's normal forward with an
`ActivationRun` passed down as an explicit argument (`activations=`). At each named point the model calls
`run(name, tensor)`, which applies that name's intervention (if any), keeps the tensor in `run.cache` (if
asked for) and returns what the rest of the forward uses. Nothing is registered on a module and no module
state changes, so two threads can run one shared agent with different interventions at once. With
`activations=None` (the plain forward) the models skip every named point: same ops, same results.

Names are dotted strings (`blocks.0.attn.pattern`); `agent.activation_names()` lists an agent's names
and its class docstring says what each is and its shape. Requests may use `*` globs (`blocks.*.resid_post`,
matched with fnmatch: `*` also crosses dots). Unknown names and globs that match nothing are errors.

The cache holds each activation as the rest of the forward used it (after its intervention).
"""
from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

Intervention = Callable[[torch.Tensor], torch.Tensor]


def match_names(patterns: str | Iterable[str] | None, available: Iterable[str], what: str = "agent") -> list[str]:
    """The names of `available` (in its order) that `patterns` select: exact names or `*` globs.
    None selects every name. An unknown exact name or a glob matching nothing raises ValueError."""
    available = list(available)
    if patterns is None:
        return available
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen = set()
    for p in patterns:
        if not isinstance(p, str):
            raise ValueError(f"activation names are strings, got {type(p).__name__}.")
        hits = [n for n in available if fnmatchcase(n, p)] if "*" in p else ([p] if p in available else [])
        if not hits:
            shown = ", ".join(available[:12]) + (", ..." if len(available) > 12 else "")
            raise ValueError(f"no activation named {p!r} in this {what} (names: {shown}).")
        chosen.update(hits)
    return [n for n in available if n in chosen]


class ActivationRun:
    """What one forward call records and replaces. Create one per call; never share it between calls."""

    __slots__ = ("keep", "interventions", "wanted", "cache")

    def __init__(self, available: Iterable[str], names: str | Iterable[str] | None = None,
                 interventions: Mapping[str, Intervention] | None = None, what: str = "agent"):
        available = list(available)
        self.keep = frozenset(match_names(names, available, what))
        self.interventions: dict[str, Intervention] = {}
        for pattern, fn in (interventions or {}).items():
            if not callable(fn):
                raise ValueError(f"the intervention on {pattern!r} must be a function tensor -> tensor.")
            for name in match_names(pattern, available, what):
                self.interventions[name] = fn
        self.wanted = self.keep | frozenset(self.interventions)
        self.cache: dict[str, torch.Tensor] = {}

    def wants(self, name: str) -> bool:
        """Is `name` recorded or intervened on (so an optional activation must be computed)?"""
        return name in self.wanted

    def __call__(self, name: str, value: torch.Tensor) -> torch.Tensor:
        fn = self.interventions.get(name)
        if fn is not None:
            new = fn(value)
            if not isinstance(new, torch.Tensor) or new.shape != value.shape:
                got = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
                raise ValueError(f"the intervention on {name!r} must return a tensor of shape {tuple(value.shape)}, got {got}.")
            value = new
        if name in self.keep:
            self.cache[name] = value
        return value


def record(run: ActivationRun | None, name: str, value: torch.Tensor) -> torch.Tensor:
    """`run(name, value)`, or `value` untouched on the plain path (run is None)."""
    return value if run is None else run(name, value)


def layer_norm(ln: nn.LayerNorm, x: torch.Tensor, run: ActivationRun | None, prefix: str) -> torch.Tensor:
    """ln(x), recording `{prefix}scale` (the per-token 1/std, [..., 1]) and `{prefix}out`.

    out = (x - mean) * scale * weight + bias. The output itself always comes from the module (the plain
    path's numbers); an intervention on the scale adds (x - mean) * (new - old) * weight, which is exactly
    zero when it leaves the scale unchanged."""
    if run is None:
        return ln(x)
    out = ln(x)
    if run.wants(prefix + "scale"):
        xc = x - x.mean(-1, keepdim=True)
        scale = torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + ln.eps)
        new = run(prefix + "scale", scale)
        if new is not scale:
            w = ln.weight if ln.weight is not None else 1.0
            out = out + xc * (new - scale) * w
    return run(prefix + "out", out)


def head_outputs(run: ActivationRun, name: str, z: torch.Tensor, proj: nn.Linear, out: torch.Tensor) -> torch.Tensor:
    """Per-head contributions after the output projection, and the projection's output they imply.

    z [B, T, H, hd]: each head's attention-weighted values; out = proj(z.reshape(B, T, H * hd)) as the
    plain path computes it. head_out[b, t, h] = z[b, t, h] @ W[:, h*hd:(h+1)*hd].T (no bias), so
    sum_h head_out + proj.bias == out. Returns out + sum_h (new - old): exactly `out` when the
    intervention changes nothing."""
    B, T, H, hd = z.shape
    head = torch.einsum("bthd,ohd->btho", z, proj.weight.view(proj.out_features, H, hd))
    new = run(name, head)
    if new is head:
        return out
    return out + (new - head).sum(2)
