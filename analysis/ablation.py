"""Ablation: switch off attention heads and MLPs of a transformer agent and measure what changes.

An ablation is a list of components, written as strings: `L{layer}H{head}` (head k of block i: its part of
`blocks.{i}.attn.head_out`), `L{layer}H*` (every head of that block) and `L{layer}MLP` (`blocks.{i}.mlp.out`).
`parse_ablation` checks them against the agent (an unknown layer or head, or an empty set, is one sentence).

Two modes:
- "zero": the component's output is replaced by zeros (a head's output excludes the projection bias, so a
  zeroed head removes exactly its own contribution to the residual stream);
- "mean": by its mean over a sample of the dataset's windows (every real token of `n_windows` windows drawn
  with `seed`; one vector per head or MLP, the same at every position and token type, so it also applies
  inside a KV-cached rollout, which feeds a step's new tokens only). Computed once per (agent, dataset,
  sample) through analysis/cache.cached.

The ablation is an intervention per call (models/activations.py): nothing is written to the agent.

Effects of a Decision Transformer ablation:
- on data (`ablation_on_data`): action accuracy (discrete; argmax = logged action) or action MSE (continuous,
  in [-1, 1]) over `n_steps` logged steps drawn as analysis/context.context_accuracy draws them (same seed,
  same steps, windows of the receptive field), intact and ablated, each with a bootstrap 95% CI, and the
  paired difference (ablated - intact, per step) with its CI;
- in the environment (`ablation_in_env`): mean return over `episodes` episodes intact and ablated, on the
  same reset seeds and the same action draws (common random numbers, models/rollout.run_episodes with
  `interventions`), each with a CI, and the paired difference per episode.

Trajectory Transformer ablation and patching: analysis/tt_causal.py (it uses the parsing and the means here).
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from models.errors import AgentError
from models.evaluate import check_dataset
from models.rollout import episode_limit, episode_uniforms, run_episodes

from .cache import cached, report, tee
from .inputs import native_dt_forward, receptive_field, step_windows, training_data
from .stats import bootstrap_ci, paired_difference_ci

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
    """(blocks, heads per block) of a transformer agent, read from its activation names and hparams."""
    names = agent.activation_names()
    n_layer = sum(1 for n in names if re.fullmatch(r"blocks\.\d+\.attn\.head_out", n))
    if not n_layer:
        raise AgentError(f"ablation switches off attention heads and MLPs; a {agent.kind} agent has none.")
    return n_layer, int(agent.hp["n_head"])


def all_components(agent) -> list[Component]:
    n_layer, n_head = layout(agent)
    return [Component(i, h) for i in range(n_layer) for h in [*range(n_head), None]]


def default_ablation(agent) -> list[str]:
    """The last block's heads: the parts that write the output's residual stream last."""
    n_layer, _ = layout(agent)
    return [f"L{n_layer - 1}H*"]


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
@contextmanager
def inference(agent):
    """no_grad, and eval mode only if the agent is training (loaded agents are in eval mode: no write)."""
    was = agent.training
    if was:
        agent.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was:
            agent.train(True)


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
    from .tt_causal import tt_window_tokens, tt_window_starts   # noqa: PLC0415 - tt_causal imports this module

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


def _estimate(values, seed: int) -> Estimate:
    v = np.asarray(values, float)
    lo, hi = bootstrap_ci(v, seed=seed)
    return Estimate(float(v.mean()), lo, hi, int(len(v)))


def _difference(ablated, intact, seed: int) -> Estimate:
    d = paired_difference_ci(ablated, intact, seed=seed)
    return Estimate(d["mean"], d["ci_low"], d["ci_high"], d["n"])


@dataclass
class DataEffect:
    """Action prediction on logged steps, intact vs ablated (same steps)."""

    metric: str                   # "accuracy" | "mse"
    intact: Estimate
    ablated: Estimate
    difference: Estimate          # ablated - intact, paired per step
    changed: float                # discrete: share of steps whose argmax action changes; continuous: mean |change|
    n_steps: int
    context: int                  # steps of history per window (the receptive field)
    steps: np.ndarray = field(repr=False, default=None)
    scores_intact: np.ndarray = field(repr=False, default=None)    # per step: 1/0 correct or squared error
    scores_ablated: np.ndarray = field(repr=False, default=None)


@dataclass
class EnvEffect:
    """Return in the environment, intact vs ablated (same reset seeds and action draws per episode)."""

    env_id: str
    target_return: float
    intact: Estimate
    ablated: Estimate
    difference: Estimate          # ablated - intact, paired per episode
    returns_intact: np.ndarray = field(repr=False, default=None)
    returns_ablated: np.ndarray = field(repr=False, default=None)

    @property
    def episodes(self) -> int:
        return self.intact.n


@dataclass
class AblationResult:
    agent: str
    components: list[str]         # labels, e.g. ["L2H0", "L2MLP"]
    mode: str
    seed: int
    data: DataEffect | None = None
    env: EnvEffect | None = None
    note: str = ""

    def to_frame(self) -> pd.DataFrame:
        rows = []
        base = {"model": self.agent, "ablate": " ".join(self.components), "mode": self.mode, "seed": self.seed}
        if self.data is not None:
            d = self.data
            measure = "action accuracy" if d.metric == "accuracy" else "action MSE"
            for cond, e in (("intact", d.intact), ("ablated", d.ablated), ("ablated - intact", d.difference)):
                rows.append({**base, "measure": measure, "condition": cond, "value": e.mean, "ci_low": e.ci_low,
                             "ci_high": e.ci_high, "n": e.n, "unit": "logged steps"})
        if self.env is not None:
            e_ = self.env
            for cond, e in (("intact", e_.intact), ("ablated", e_.ablated), ("ablated - intact", e_.difference)):
                rows.append({**base, "measure": "return", "condition": cond, "value": e.mean, "ci_low": e.ci_low,
                             "ci_high": e.ci_high, "n": e.n, "unit": f"episodes ({e_.env_id}, target {e_.target_return:g})"})
        return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------
# Decision Transformer: effects on data and in the environment
# ---------------------------------------------------------------------------------------------------
def _check_dt(agent) -> None:
    if agent.has("tokens"):
        raise AgentError("a Trajectory Transformer predicts tokens, not actions: its ablation is the figure tt_ablation "
                         "(analysis.tt_causal.tt_ablation).")
    if not (agent.has("action") and agent.has("attention")):
        raise AgentError(f"ablation switches off attention heads and MLPs of a Decision Transformer; a {agent.kind} "
                         "agent has none.")


def action_outputs(agent, inputs: dict, interventions: dict | None = None) -> torch.Tensor:
    """A DT's action output at each window's last step [B, ...] under `interventions` (None or {}: the plain
    numbers of analysis.inputs.last_step_outputs). Only what the last s_t token reads is computed."""
    if native_dt_forward(agent):
        out, _ = agent.run_with_cache(inputs, [], interventions or None, last_state_only=True)
    else:   # a subclass with its own forward: the full forward
        out, _ = agent.run_with_cache(inputs, [], interventions or None)
    return out.action_preds[:, -1]


def data_steps(dataset, n_steps: int, seed: int) -> np.ndarray:
    """The logged steps analysis.context.context_accuracy scores (uniform, without replacement, sorted)."""
    n = dataset.n_transitions
    return np.sort(np.random.default_rng(seed).choice(n, size=min(int(n_steps), n), replace=False))


def _outputs(agent, data, steps, interventions, batch_size: int, what: str, start: float = 0.0) -> torch.Tensor:
    """Action outputs at `steps` in batches; progress reported from `start` to `start` + 0.5."""
    out, ctx = [], receptive_field(agent)
    for i in range(0, len(steps), batch_size):
        out.append(action_outputs(agent, step_windows(agent, data, steps[i:i + batch_size], context=ctx), interventions))
        done = min(i + batch_size, len(steps))
        report(start + 0.5 * done / len(steps), f"{what}: {done}/{len(steps)} steps")
    return torch.cat(out)


def ablation_on_data(agent, dataset, interventions: dict, n_steps: int = 4000, seed: int = 0,
                     batch_size: int = 256) -> DataEffect:
    """Action accuracy (discrete) or MSE (continuous) on `n_steps` logged steps with and without `interventions`
    (ablation_interventions; {} compares the plain forward with itself)."""
    from .context import _scores

    _check_dt(agent)
    check_dataset(agent, dataset)
    if int(n_steps) < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}.")
    steps = data_steps(dataset, n_steps, seed)
    data = training_data(agent, dataset)
    with inference(agent):
        # the intact outputs are the same for every ablation: computed once per (agent, dataset, steps)
        intact = torch.as_tensor(cached("ablation_intact_outputs",
                                        lambda: _outputs(agent, data, steps, None, batch_size, "intact").numpy(),
                                        agent, dataset, n_steps=int(n_steps), seed=int(seed)))
        ablated = _outputs(agent, data, steps, interventions, batch_size, "ablated", start=0.5)
    s0, s1 = _scores(agent, dataset, steps, intact), _scores(agent, dataset, steps, ablated)
    if agent.discrete:
        changed = float((intact.argmax(-1) != ablated.argmax(-1)).double().mean())
    else:
        changed = float((ablated - intact).abs().mean())
    return DataEffect("accuracy" if agent.discrete else "mse", _estimate(s0, seed), _estimate(s1, seed),
                      _difference(s1, s0, seed), changed, len(steps), receptive_field(agent), steps, s0, s1)


def default_target(agent) -> float:
    from .context import _default_target

    return _default_target(agent)


def ablation_in_env(agent, interventions: dict, episodes: int = 8, target_return: float | None = None, seed: int = 0,
                    sample: bool = True, progress=None) -> EnvEffect:
    """Mean return over `episodes` episodes intact and with `interventions`, on reset seeds seed + i and the same
    per-episode action draws on both sides (models/rollout.episode_uniforms), with CIs and the paired difference."""
    from models.env_choice import can_act

    _check_dt(agent)
    if int(episodes) < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}.")
    if not can_act(agent):
        raise AgentError("the agent names no environment that can be made here (choose one on the home page, or "
                         "cli.py --env ID); the effect on data needs none (episodes=0).")
    n = int(episodes)
    target = default_target(agent) if target_return is None else float(target_return)
    env_id = agent.config.env_id
    u = episode_uniforms(n, episode_limit(env_id, agent) + 1, seed)
    prog = tee(progress)

    def returns(k: int, iv) -> np.ndarray:
        def step(f, m):
            prog((k + f) / 2, f"{'ablated' if k else 'intact'}: {m}")
        return run_episodes(agent, n, np.full(n, target), seed=seed, uniforms=u, sample=sample, interventions=iv,
                            progress=step).returns
    # the intact episodes are the same for every ablation: run once per (agent, episodes, target, seed, sample)
    r0 = cached("ablation_intact_returns", lambda: returns(0, None), agent, None, episodes=n, target=target,
                seed=int(seed), sample=bool(sample))
    r1 = returns(1, interventions)
    return EnvEffect(env_id, target, _estimate(r0, seed), _estimate(r1, seed), _difference(r1, r0, seed), r0, r1)


def ablation(agent, dataset, ablate, mode: str = "zero", n_steps: int = 4000, episodes: int = 0,
             target_return: float | None = None, seed: int = 0, n_windows: int = 256, progress=None,
             name: str | None = None) -> AblationResult:
    """Ablate `ablate` (parse_ablation's strings) of a Decision Transformer in `mode` ("zero" or "mean"; means over
    `n_windows` of the dataset's windows drawn with `seed`) and measure the effect on action prediction over
    `n_steps` logged steps and, with episodes > 0, on return in the environment."""
    _check_dt(agent)
    components, iv = build_interventions(agent, dataset, ablate, mode, n_windows, seed)
    data = ablation_on_data(agent, dataset, iv, n_steps, seed) if dataset is not None and int(n_steps) > 0 else None
    env = ablation_in_env(agent, iv, episodes, target_return, seed, progress=progress) if int(episodes) > 0 else None
    return AblationResult(name or agent_name(agent), [c.label for c in components], mode, int(seed), data, env)


def agent_name(agent) -> str:
    """How the figures name the agent (as analysis/context does)."""
    return f"{agent.kind.upper()} (K={agent.context_length})"
