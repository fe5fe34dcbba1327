"""The parts of a transformer agent that ablation switches off, and what ablation and the Trajectory Transformer's
causal views (analysis/interp/ablation.py, analysis/interp/tt_causal.py) share: parsing component names
(`L{layer}H{head}`, `L{layer}H*`, `L{layer}MLP`), each component's mean output over a dataset's windows, the
interventions that replace outputs by zeros or means, and a mean or a paired difference with its bootstrap CI.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from models.base import inference
from models.errors import AgentError
from models.checks import check_dataset

from analysis.core.cache import cached, report
from analysis.core.inputs import receptive_field, step_windows, training_data
from analysis.core.stats import bootstrap_ci, paired_difference_ci

MODES = ("zero", "mean")
_COMPONENT = re.compile(r"^L(\d+)(?:H(\d+|\*)|(MLP))$", re.IGNORECASE)
EXAMPLE = "e.g. L0H1, L2H*, L2MLP"


@dataclass(frozen=True)
class Component:
    """One ablatable part: head `head` of block `layer`, or the block's MLP (head None)."""

    layer: int
    head: int | None = None     # None: the MLP

    def __lt__(self, other):    # heads before the MLP of the same block
        return (self.layer, self.head is None, self.head or 0) < (other.layer, other.head is None, other.head or 0)

    @property
    def label(self) -> str:
        return f"L{self.layer}MLP" if self.head is None else f"L{self.layer}H{self.head}"

    @property
    def activation(self) -> str:
        return f"blocks.{self.layer}.mlp.out" if self.head is None else f"blocks.{self.layer}.attn.head_out"


def layout(agent) -> tuple[int, int]:
    """(blocks, heads per block) of a transformer agent, read from its activation names and `agent.n_head`."""
    names = agent.activation_names()
    n_layer = sum(1 for n in names if re.fullmatch(r"blocks\.\d+\.attn\.head_out", n))
    if not n_layer:
        raise AgentError(f"ablation switches off attention heads and MLPs; a {agent.kind} agent has none.")
    return n_layer, int(agent.n_head)


def all_components(agent) -> list[Component]:
    n_layer, n_head = layout(agent)
    return [Component(i, h) for i in range(n_layer) for h in [*range(n_head), None]]


def parse_ablation(agent, ablate) -> list[Component]:
    """["L0H1", "L2MLP", "L1H*"] (or one string, comma- or space-separated) -> sorted, de-duplicated
    components. An empty set, a malformed name or a layer / head the agent lacks: ValueError, one sentence."""
    n_layer, n_head = layout(agent)
    if ablate is None:
        items = []
    elif isinstance(ablate, str):
        items = [p for p in re.split(r"[,\s]+", ablate) if p]
    else:
        items = [str(p).strip() for p in ablate if str(p).strip()]
    if not items:
        raise ValueError(f"choose at least one head or MLP to ablate ({EXAMPLE}).")
    exists = (f"this agent has layers L0-L{n_layer - 1}, heads H0-H{n_head - 1} in each and one MLP per layer"
              if n_head > 1 else f"this agent has layers L0-L{n_layer - 1}, one head (H0) and one MLP in each")
    out = set()
    for item in items:
        m = _COMPONENT.match(item)
        if not m:
            raise ValueError(f"'{item}' is not a head or an MLP: write L<layer>H<head> or L<layer>MLP ({EXAMPLE}).")
        layer = int(m.group(1))
        head = m.group(2)
        if layer >= n_layer or (head not in (None, "*") and int(head) >= n_head):
            raise ValueError(f"there is no {item.upper()}: {exists}.")
        if m.group(3):
            out.add(Component(layer, None))
        elif head == "*":
            out.update(Component(layer, k) for k in range(n_head))
        else:
            out.add(Component(layer, int(head)))
    return sorted(out)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be 'zero' or 'mean', got {mode!r}.")
    return mode


# ---------------------------------------------------------------------------------------------------
# means over the dataset, and the interventions
# ---------------------------------------------------------------------------------------------------
def _mean_names(agent) -> list[str]:
    n_layer, _ = layout(agent)
    return [f"blocks.{i}.{n}" for i in range(n_layer) for n in ("attn.head_out", "mlp.out")]


def _dt_means(agent, dataset, n_windows: int, seed: int, batch_size: int = 64) -> dict[str, np.ndarray]:
    data = training_data(agent, dataset)
    n = dataset.n_transitions
    steps = np.sort(np.random.default_rng(seed).choice(n, size=min(int(n_windows), n), replace=False))
    names = _mean_names(agent)
    sums, count = {}, 0.0
    for i in range(0, len(steps), batch_size):
        inputs = step_windows(agent, data, steps[i:i + batch_size], context=receptive_field(agent))
        _, cache = agent.run_with_cache(inputs, names)
        real = inputs["attention_mask"].bool().repeat_interleave(3, dim=1)          # [B, 3L]: every real token
        for name in names:
            s = cache[name][real].double().sum(0)                                    # [heads, H] or [H]
            sums[name] = s if name not in sums else sums[name] + s
        count += float(real.sum())
        report(min(1.0, (i + batch_size) / len(steps)), f"means of heads and MLPs: {min(i + batch_size, len(steps))} windows")
    return {k: (v / count).float().numpy() for k, v in sums.items()}


def _tt_means(agent, dataset, n_windows: int, seed: int, batch_size: int = 64) -> dict[str, np.ndarray]:
    starts, W = tt_window_starts(agent, dataset, n_windows, seed)
    tokens = agent.tokenize(dataset)
    names = _mean_names(agent)
    sums, count = {}, 0
    for i in range(0, len(starts), batch_size):
        inputs = torch.as_tensor(tt_window_tokens(agent, tokens, starts[i:i + batch_size], W))
        _, cache = agent.run_with_cache(inputs, names)
        for name in names:
            s = cache[name].double().sum((0, 1))
            sums[name] = s if name not in sums else sums[name] + s
        count += inputs.numel()
    return {k: (v / count).float().numpy() for k, v in sums.items()}


def ablation_means(agent, dataset, n_windows: int = 256, seed: int = 0) -> dict[str, np.ndarray]:
    """{blocks.{i}.attn.head_out: [heads, H], blocks.{i}.mlp.out: [H]}: each component's mean output over every
    real token of `n_windows` of the dataset's windows (drawn with `seed`; a DT's windows of its receptive field
    ending at uniformly drawn steps, a TT's windows of K whole transitions). Cached on agent + dataset content."""
    check_dataset(agent, dataset)

    def compute():
        with inference(agent):
            fn = _tt_means if agent.has("tokens") else _dt_means
            return fn(agent, dataset, int(n_windows), int(seed))
    return cached("ablation_means", compute, agent, dataset, n_windows=int(n_windows), seed=int(seed))


def ablation_interventions(agent, components: list[Component], mode: str = "zero",
                           means: dict[str, np.ndarray] | None = None) -> dict:
    """{activation name: fn} replacing the components' outputs by zeros or by `means` (ablation_means): one
    function per block's head output and per MLP. Each works on any number of tokens (data windows, a
    rollout's cached step). An empty list gives {} (the plain forward)."""
    check_mode(mode)
    if mode == "mean" and means is None:
        raise ValueError("mean-ablation needs the means (ablation_means(agent, dataset)).")
    heads: dict[int, list[int]] = {}
    mlps: list[int] = []
    for c in components:
        if c.head is None:
            mlps.append(c.layer)
        else:
            heads.setdefault(c.layer, []).append(c.head)
    out = {}
    for layer, ks in heads.items():
        name = f"blocks.{layer}.attn.head_out"
        idx = torch.tensor(sorted(ks))
        value = None if mode == "zero" else torch.as_tensor(means[name])[idx]      # [k, H]
        out[name] = _replace_heads(idx, value)
    for layer in mlps:
        name = f"blocks.{layer}.mlp.out"
        out[name] = _replace_all(None if mode == "zero" else torch.as_tensor(means[name]))
    return out


def _replace_heads(idx: torch.Tensor, value: torch.Tensor | None):
    def fn(h: torch.Tensor) -> torch.Tensor:          # h [..., T, heads, H]
        new = h.clone()
        new[..., idx, :] = 0.0 if value is None else value.to(h)
        return new
    return fn


def _replace_all(value: torch.Tensor | None):
    def fn(h: torch.Tensor) -> torch.Tensor:          # h [..., T, H]
        return torch.zeros_like(h) if value is None else value.to(h).expand_as(h).clone()
    return fn


def build_interventions(agent, dataset, ablate, mode: str = "zero", n_windows: int = 256, seed: int = 0):
    """parse_ablation + (mode "mean": ablation_means) + ablation_interventions -> (components, interventions)."""
    components = parse_ablation(agent, ablate)
    check_mode(mode)
    if mode == "mean" and dataset is None:
        raise ValueError("mean-ablation needs a dataset to take the means over.")
    means = ablation_means(agent, dataset, n_windows, seed) if mode == "mean" else None
    return components, ablation_interventions(agent, components, mode, means)


# ---------------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------------
@dataclass
class Estimate:
    """A mean with its bootstrap 95% CI."""

    mean: float
    ci_low: float
    ci_high: float
    n: int


def estimate(values, seed: int) -> Estimate:
    v = np.asarray(values, float)
    lo, hi = bootstrap_ci(v, seed=seed)
    return Estimate(float(v.mean()), lo, hi, int(len(v)))


def difference(ablated, intact, seed: int) -> Estimate:
    d = paired_difference_ci(ablated, intact, seed=seed)
    return Estimate(d["mean"], d["ci_low"], d["ci_high"], d["n"])




def tt_window_starts(agent, dataset, n_windows: int, seed: int) -> tuple[np.ndarray, int]:
    """(sorted absolute start steps, W): `n_windows` windows of W = min(K, longest episode) whole transitions
    inside one episode each, drawn uniformly without replacement with `seed`."""
    W = int(min(agent.context_length, dataset.episode_lengths.max()))
    if W < 2:
        raise AgentError(f"{dataset.source} has no episode of 2 steps or more: a TT window needs a transition before the "
                         "one it predicts.")
    ends = np.repeat(dataset.episode_ends, dataset.episode_lengths)
    valid = np.flatnonzero(np.arange(dataset.n_transitions) + W <= ends)
    if int(n_windows) < 1:
        raise ValueError(f"n_windows must be at least 1, got {n_windows}.")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(valid, size=min(int(n_windows), len(valid)), replace=False)), W


def tt_window_tokens(agent, tokens: np.ndarray, starts: np.ndarray, W: int) -> np.ndarray:
    """Input tokens [B, W * D - 1] of the windows of W transitions starting at `starts` (tokens: agent.tokenize)."""
    idx = np.asarray(starts)[:, None] + np.arange(W)[None, :]
    return tokens[idx].reshape(len(starts), W * agent.D)[:, :-1]
