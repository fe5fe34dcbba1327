"""Credit assignment: which past tokens of a context window get the credit for one output of a
Decision Transformer (or the MLP baseline) at a chosen step of a logged episode.

Attribution methods come from captum (never reimplemented here):
  - "ig":        IntegratedGradients with its convergence delta reported; n_steps is doubled until
                 |delta| <= delta_tol * max(|f(x) - f(baseline)|, 0.01) (or max_n_steps is reached);
  - "saliency":  Saliency, |d output / d input| (Simonyan et al. 2014);
  - "ablation":  FeatureAblation: the output change when inputs are replaced by the baseline, at three
                 granularities: each feature alone, each token (R, s or a of one step) and each whole
                 timestep (its R, s and a together: `steps`). Ablation effects do not add up.

Targets (docs/ARCHITECTURE.md, Conventions, Key-to-Door: the action there needs no memory, the return/value
prediction does):
  - "action": the logit of the logged action (discrete) or one action dimension (continuous, tanh output);
  - "return": return_preds at the a_t token (R_{t+1}, scaled);
  - "value":  value_preds with rtg_known=False: the return inferred from the history alone (every R
              token replaced by the learned "unknown" embedding, so R inputs get no credit).
  - "q", "v" (value-based agents, `Q_TARGETS`): Q(s, a) of the logged action and V(s), read from the agent's
              named activations head.q / head.v (attribution_adapters.MarkovQ / RecurrentQ): a Markov agent's credit
              goes to the current observation's features, a recurrent one's (drqn) to every past step's observation
              and previous action, as a GRU's. `targets_of(agent)` lists an agent's targets.

Baseline (what "absent" means for IG and ablation), in the model's input space: the dataset-mean state
(normalised with the agent's statistics, so ~0 for its training data), the mean action input (action
frequencies for one-hot discrete actions, the mean [-1, 1] action for continuous ones) and the mean
return-to-go of the dataset's steps (scaled). Left padding keeps its own values (no credit). An all-zero
input is not neutral here: a zero one-hot is no action at all and a zero return-to-go is a real request.
Measured on keydoor-dt (32 episodes, explained at step 15, 32 Gauss-Legendre steps), max |delta| / |f(x) -
f(baseline)|: action logit 0.7% with this baseline vs 3.2% with an all-zero raw input; value 0.4% vs 0.3%;
return 0.02% vs 0.06%. With the zero input the return prediction hardly moves (median |f(x) - f(b)| 0.002:
most episodes there do ask for R = 0), so there is little to attribute. 8 steps gave deltas up to 400%.

Shaped observations (grids, frame stacks: issue 23): the state token is the whole observation, its features the
observation's values flattened in their own C order (named by index, "(row, col, channel)"); the state baseline is
the dataset's mean observation in its own shape, i.e. the mean of the agent's transform of the raw grids / frames over
at most MEAN_ROWS evenly spaced steps (`dataset_baseline(states="zeros")`: all zeros in the model's input space).
Measured with 32 Gauss-Legendre steps (no doubling), max |delta| / |f(x) - f(b)| (median in brackets): memory-dt, 32
episodes at their last step: action 5.6% (0.5%), value 1.2%, return 0.02%; at their middle step: action 9.8% (1.0%),
value 0.8%, return 0.00%, the same for both baselines, since memory-dt normalises with its training data's mean (the
mean grid is zeros in its input space, max |value| 2e-7). A random-weight atari_conv DT (2 layers, 32 wide, K=4, 4
episodes of random 4x84x84 frames, last steps): action 20.0% (4.6%) from the mean frame vs 22.9% (8.9%) from a black
one, value 5.1% (2.8%) vs 17.6% (6.1%), return 0.00% vs 0.01%. The doubling brings every one under 1%. The state
token's credit equals the spatial map (analysis/interp/spatial_credit.py) summed over its cells: saliency always, IG
when only the states are attributed (`modalities=("state",)`, the path spatial credit takes). Ablation measures each
feature alone only up to ABLATION_FEATURES values of a modality in the window (more: NaN; tokens and steps always).

Every map comes with a model-randomisation sanity check (Adebayo et al. 2018): the same map on a copy of
the model re-initialised (seeded, GPT-2 style) and the Spearman rank correlation of the two maps'
|attribution| over the real (unpadded) inputs. A map that survives randomisation explains the input,
not the model.

Layout: this module is the core (results, baseline, captum methods, attribute_steps / attribute_step);
analysis/interp/attribution_adapters.py puts the MLP and GRU behind the DT's signature; analysis/interp/attribution_markers.py
names landmark steps (Key-to-Door); analysis/interp/keydoor_credit.py measures credit on the key step.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from captum.attr import FeatureAblation, IntegratedGradients, Saliency
from scipy.stats import spearmanr
from torch import nn

from models.base import Agent, gpt2_init, inference
from models.windows import TrainingData
from trajectories.digest import take_rows

from analysis.interp.attribution_adapters import MODALITIES, adapter, model_inputs
from analysis.interp.attribution_markers import episode_markers
from analysis.interp.attribution_markers import KeyDoorSteps, is_key_to_door, key_door_steps  # noqa: F401 - re-exported (pages, tests)
from analysis.core.inputs import training_data

# MODALITIES (attribution_adapters): a DT step's token order R, s, a
_INPUT_NAME = {"return-to-go": "returns_to_go", "state": "states", "action": "actions"}
TARGETS = {"action": "action_preds", "return": "return_preds", "value": "value_preds"}
# value-based agents' outputs (capability "q_values", issue 24): Q of the logged action, and V(s)
Q_TARGETS = {"q": "q_preds", "v": "v_preds"}
HEADS = {**TARGETS, **Q_TARGETS}
METHODS = {"ig": "integrated gradients", "saliency": "saliency |∂f/∂x|", "ablation": "ablation (replace by baseline)"}
ADDITIVE = {"ig": True, "saliency": True, "ablation": False}
# IG's interpolated windows per forward: at most 2**26 input values (256 MB of float32) a chunk, as spatial_credit's:
# 1,024 windows of 30 Atari frame stacks at once would be 3.5 GB
IG_VALUES = 2 ** 26


# ---- results ----------------------------------------------------------------------------------------------
@dataclass
class AttributionMap:
    """One model's attribution of one output to the inputs of one window of L steps (oldest first)."""

    features: dict[str, np.ndarray]   # modality -> [L, n_features] signed (saliency: >= 0; ablation: one feature replaced)
    tokens: np.ndarray                # [L, 3] per token R, s, a (gradient methods: sum of its features; ablation: token replaced)
    steps: np.ndarray                 # [L] per timestep (gradient methods: sum of its tokens; ablation: whole step replaced)
    additive: bool                    # gradient methods: aggregates are sums; ablation: measured per group
    output: float                     # f(x): the explained output
    baseline_output: float            # f(baseline)
    delta: float | None = None        # IG convergence delta: sum(attributions) - (f(x) - f(baseline))

    def per_step(self) -> np.ndarray:
        """|attribution| per timestep [L]: sum of |feature attributions| (gradient methods) or |whole-step ablation|."""
        if self.additive:
            return sum(np.abs(a).sum(1) for a in self.features.values())
        return np.abs(self.steps)

    def per_token(self) -> np.ndarray:
        """|attribution| per token [L, 3] (R, s, a): sum of |feature attributions| or |token ablation|."""
        if self.additive:
            L = len(self.steps)
            return np.stack([np.abs(self.features[m]).sum(1) if m in self.features else np.zeros(L) for m in MODALITIES], 1)
        return np.abs(self.tokens)

    def per_feature(self, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """|attribution| per input feature summed over the window's (real) steps: modality -> [n_features] (NaN
        where ablation did not measure features one by one: ABLATION_FEATURES)."""
        return {m: np.abs(a if mask is None else a[mask]).sum(0) for m, a in self.features.items()}

    def flat(self, mask: np.ndarray) -> np.ndarray:
        """Every feature's attribution at real positions, in a fixed order (for rank correlations); a modality whose
        features were not measured (ablation of a large observation: NaN) is represented by its token."""
        parts = [a[mask].ravel() if np.isfinite(a).all() else self.tokens[mask, MODALITIES.index(m)]
                 for m, a in self.features.items()]
        return np.concatenate(parts)


@dataclass
class Attribution:
    """Attribution of one output at one step of a logged episode, with its randomized-model sanity check."""

    method: str                        # "ig" | "saliency" | "ablation"
    target: str                        # "action" | "return" | "value"
    target_label: str                  # what exactly was explained, in words
    episode: int
    step: int                          # episode step whose output is explained (the window's last step)
    window_steps: np.ndarray           # [L] episode step of each window position; -1 for left padding
    feature_names: dict[str, list[str]]   # modality -> names of its features
    trained: AttributionMap
    randomized: AttributionMap | None
    spearman: float                    # rank correlation of |feature attributions|, trained vs randomized
    spearman_steps: float              # the same over per-step |attribution|
    rewards: np.ndarray                # [T] the episode's rewards (raw), for the timeline
    returns_to_go: np.ndarray          # [T] the episode's returns-to-go (raw)
    n_steps: int | None = None         # IG integration steps used
    baseline: str = ""                 # what the baseline input was
    markers: dict[str, int] = field(default_factory=dict)   # named episode steps (Key-to-Door: key, phase 3)

    @property
    def mask(self) -> np.ndarray:
        return self.window_steps >= 0

    @property
    def steps_back(self) -> np.ndarray:
        """[L] steps before the explained one (0 = the current step); -1 for padding."""
        return np.where(self.mask, self.step - self.window_steps, -1)

    def share_over_uniform(self, episode_step: int, exclude_current: bool = True, randomized: bool = False) -> float:
        """Share of |attribution| on `episode_step` over the uniform share of the (real) context."""
        m = self.randomized if randomized else self.trained
        if m is None:
            raise ValueError("this attribution was computed without the randomized model.")
        real = self.window_steps[self.mask]
        if episode_step not in real:
            raise ValueError(f"episode step {episode_step} is not in the window (steps {real.min()}..{real.max()}).")
        return share_over_uniform(m.per_step()[self.mask], int(np.flatnonzero(real == episode_step)[0]), exclude_current)

    def to_frame(self) -> pd.DataFrame:
        """One row per real input feature: step, steps back, modality, feature, attribution (trained and randomized)."""
        rows = []
        for pos in np.flatnonzero(self.mask):
            for m, names in self.feature_names.items():
                for j, name in enumerate(names):
                    rows.append({"episode": self.episode, "explained_step": self.step, "step": int(self.window_steps[pos]),
                                 "steps_back": int(self.steps_back[pos]), "modality": m, "feature": name,
                                 "attribution": float(self.trained.features[m][pos, j]),
                                 "randomized_attribution": float(self.randomized.features[m][pos, j]) if self.randomized else np.nan})
        df = pd.DataFrame(rows)
        df.attrs.update(method=self.method, target=self.target, spearman=self.spearman, delta=self.trained.delta)
        return df

    def features_frame(self) -> pd.DataFrame:
        """One row per input feature: |attribution| summed over the window and its share, trained and randomized."""
        out = {"modality": [m for m in self.feature_names for _ in self.feature_names[m]],
               "feature": [n for m in self.feature_names for n in self.feature_names[m]]}
        for prefix, m in (("", self.trained), ("randomized_", self.randomized)):
            if m is None:
                continue
            v = np.concatenate([m.per_feature(self.mask)[k] for k in self.feature_names])
            out[f"{prefix}abs_attribution"] = v
            out[f"{prefix}share"] = v / v.sum() if v.sum() > 0 else np.full(len(v), np.nan)
        return pd.DataFrame(out)

    def steps_frame(self) -> pd.DataFrame:
        """One row per real timestep: per-token and per-step |attribution| and shares, trained and randomized."""
        mask = self.mask
        out = {"episode": self.episode, "explained_step": self.step, "step": self.window_steps[mask],
               "steps_back": self.steps_back[mask], "reward": self.rewards[self.window_steps[mask]]}
        for prefix, m in (("", self.trained), ("randomized_", self.randomized)):
            if m is None:
                continue
            tok, per = m.per_token()[mask], m.per_step()[mask]
            for k, name in enumerate(MODALITIES):
                out[f"{prefix}{name}"] = tok[:, k]
            out[f"{prefix}step_total"] = per
            out[f"{prefix}step_share"] = per / per.sum() if per.sum() > 0 else np.full(len(per), np.nan)
        return pd.DataFrame(out)


def targets_of(agent) -> list[str]:
    """The outputs of `agent` attribution explains: "q" and "v" for a value-based agent, else those of "action",
    "return", "value" it predicts."""
    if agent.has("q_values"):
        return list(Q_TARGETS)
    return [t for t in TARGETS if agent.has(t)]


def share_over_uniform(per_step, step_index: int, exclude_current: bool = True) -> float:
    """Share of |attribution| on one step of the context divided by the uniform share 1/n.

    per_step: |attribution| per real context step, oldest first, the current (explained) step last.
    exclude_current: leave the current step out of both the share and n (its own state usually dominates).
    1.0 = as much as an average step; 2.5 = two and a half times the average."""
    v = np.abs(np.asarray(per_step, dtype=float))
    n_all = len(v)
    i = step_index + n_all if step_index < 0 else step_index
    if not 0 <= i < n_all:
        raise IndexError(f"step_index {step_index} outside the {n_all} context steps.")
    if exclude_current:
        if i == n_all - 1:
            raise ValueError("step_index is the current step, which exclude_current=True leaves out.")
        v = v[:-1]
    total = v.sum()
    return float(v[i] / total * len(v)) if total > 0 else float("nan")


# ---- baseline and models -----------------------------------------------------------------------------------
@dataclass
class Baseline:
    """The 'absent' input, in the model's input space (normalised states, scaled return, action inputs)."""

    returns_to_go: float
    states: np.ndarray      # [obs_dim] (shaped observations: flattened in their own C order, as model_inputs gives them)
    actions: np.ndarray     # [action_in]
    description: str = ""


STATE_BASELINES = ("mean", "zeros")
MEAN_ROWS = 20_000      # shaped data: the mean observation over at most this many evenly spaced steps (1M Atari
MEAN_CHUNK = 512        # steps are 28 GB as float32), read MEAN_CHUNK at a time through the agent's transform


def dataset_baseline(agent, data: TrainingData, states: str = "mean") -> Baseline:
    """Dataset-mean state (states="zeros": all zeros in the model's input space), mean action input and mean
    return-to-go of the dataset's steps. Shaped observations: the mean observation in its own shape, i.e. the mean of
    the agent's transform of the raw frames / grids (the transform is affine: the transform of the mean frame)."""
    if states not in STATE_BASELINES:
        raise ValueError(f"the state baseline must be one of {', '.join(STATE_BASELINES)}, got {states!r}.")
    if states == "zeros":
        state = np.zeros(int(np.prod(data.obs.shape[1:])), np.float32)
    elif data.obs_transform is None:
        state = data.obs.mean(0).astype(np.float32)
    else:
        state = shaped_mean(data).reshape(-1)
    if agent.discrete:
        n = int(agent.config.n_actions)
        actions = np.bincount(np.asarray(data.actions, np.int64).reshape(-1), minlength=n)[:n] / max(len(data.actions), 1)
    else:
        actions = agent.actions_to_unit(torch.as_tensor(data.actions, dtype=torch.float32)).mean(0).cpu().numpy()
    rtg = float(data.rtg.mean())
    what = "action frequencies" if agent.discrete else "mean action"
    first = "all-zero state" if states == "zeros" else "dataset-mean state"
    desc = f"{first}, {what}, mean return-to-go {rtg * agent.config.rtg_scale:.3g}"
    return Baseline(rtg, state, np.asarray(actions, np.float32), desc)


def shaped_mean(data: TrainingData) -> np.ndarray:
    """[*obs_shape] float32: the mean of the transformed observations over at most MEAN_ROWS evenly spaced steps."""
    n = len(data.obs)
    rows = np.unique(np.linspace(0, n - 1, min(n, MEAN_ROWS)).round().astype(np.int64)) if n else np.zeros(0, np.int64)
    integer = np.issubdtype(data.obs.dtype, np.integer)
    total = np.zeros(data.obs.shape[1:], np.int64 if integer else np.float64)
    for i in range(0, len(rows), MEAN_CHUNK):
        chunk = take_rows(data.obs, rows[i:i + MEAN_CHUNK])   # a map: read, not paged into the server's memory
        if integer:   # exact integer sums; the transform is affine, so the mean's transform is the transforms' mean
            total += chunk.sum(0, dtype=np.int64)   # (float32 copies of 20,000 frames were 0.5 s of the Credit page)
        else:
            total += np.asarray(data.obs_transform(chunk), np.float32).sum(0)
    mean = total / max(len(rows), 1)
    return np.asarray(data.obs_transform(mean[None])[0] if integer else mean, np.float32)


def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of `model` with every weight re-initialised (seeded): GPT-2 init for Linear / Embedding
    (models.base.gpt2_init), LayerNorm to identity, other parameters (DT's return_unknown) to zero.
    A Decision Transformer is rebuilt from its config, i.e. exactly its own initialisation."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(model, Agent) and model.has("step_tokens"):
            fresh = type(model)(model.config).to(next(model.parameters()).device)
        else:
            fresh = copy.deepcopy(model)
            touched = set()
            for mod in fresh.modules():
                if isinstance(mod, (nn.Linear, nn.Embedding)):
                    gpt2_init(mod)
                elif isinstance(mod, nn.LayerNorm):
                    mod.reset_parameters()
                else:
                    continue
                touched.update(id(p) for p in mod.parameters(recurse=False))
            with torch.no_grad():
                for p in fresh.parameters():
                    if id(p) not in touched:
                        nn.init.normal_(p, 0.0, 0.02)
    fresh.eval()
    return fresh


# ---- the core: any DT-like model, batched windows ---------------------------------------------------------------
@dataclass
class _Raw:
    features: dict[str, np.ndarray]   # modality -> [B, L, n]
    tokens: np.ndarray                # [B, L, 3]
    steps: np.ndarray                 # [B, L]
    output: np.ndarray                # [B]
    baseline_output: np.ndarray       # [B]
    delta: np.ndarray | None          # [B]
    n_steps: int | None

    def map(self, b: int, additive: bool) -> AttributionMap:
        return AttributionMap({m: a[b] for m, a in self.features.items()}, self.tokens[b], self.steps[b], additive,
                              float(self.output[b]), float(self.baseline_output[b]),
                              None if self.delta is None else float(self.delta[b]))


def attribute_inputs(model: nn.Module, inputs: dict[str, torch.Tensor], target: str, method: str,
                     baseline: Baseline, action_index=None, modalities=MODALITIES, n_steps: int = 32,
                     max_n_steps: int = 1024, delta_tol: float = 0.01, internal_batch_size: int = 1024,
                     perturbations_per_eval: int = 64) -> _Raw:
    """Attribute `target` at the last position of B windows to their inputs.

    model: forward(states, actions, returns_to_go, timesteps, attention_mask, rtg_known=...) returning an
    object with action_preds / return_preds / value_preds [B, L, n]. inputs: forward kwargs [B, L, ...]
    (normalised / scaled, as window_inputs gives). action_index: [B] (or int) index into action_preds.
    modalities: which of R, s, a are attributed (the others are held fixed)."""
    if target not in HEADS:
        raise ValueError(f"unknown target '{target}' (known: {', '.join(HEADS)}).")
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}' (known: {', '.join(METHODS)}).")
    names = [_INPUT_NAME[m] for m in modalities]
    others = [k for k in ("states", "actions", "returns_to_go", "timesteps", "attention_mask") if k not in names]
    head, rtg_known = HEADS[target], target != "value"
    x = tuple(inputs[k].float() for k in names)
    B, L = x[0].shape[:2]
    per_window = max(sum(t[0].numel() for t in x), 1)
    real = inputs["attention_mask"].bool() if inputs.get("attention_mask") is not None else torch.ones(B, L, dtype=torch.bool)
    base_vec = {"returns_to_go": np.array([baseline.returns_to_go], np.float32), "states": baseline.states,
                "actions": baseline.actions}
    baselines = tuple(torch.where(real[..., None], torch.as_tensor(base_vec[k], dtype=t.dtype, device=t.device).expand_as(t), t)
                      for k, t in zip(names, x))
    extra = tuple(inputs[k] for k in others)
    idx = torch.zeros(B, dtype=torch.long) if action_index is None else torch.as_tensor(action_index, dtype=torch.long).expand(B)
    tgt = idx if target in ("action", "q") else torch.zeros(B, dtype=torch.long)

    def f(*args):
        kw = dict(zip(names, args[:len(names)]))
        kw.update(zip(others, args[len(names):]))
        out = model(kw["states"], kw["actions"], kw["returns_to_go"], kw["timesteps"], kw["attention_mask"],
                    rtg_known=rtg_known)
        return getattr(out, head)[:, -1]

    with inference(model, grad=True):
        with inference(model):
            fx = f(*x, *extra).gather(1, tgt[:, None])[:, 0]
            fb = f(*baselines, *extra).gather(1, tgt[:, None])[:, 0]
        delta, used = None, None
        if method == "ig":
            ig = IntegratedGradients(f)
            used = n_steps
            while True:
                rows = min(internal_batch_size, max(B, IG_VALUES // per_window))   # Atari: 79 windows a chunk
                attr, delta = ig.attribute(x, baselines, target=tgt, additional_forward_args=extra, n_steps=used,
                                           internal_batch_size=rows, return_convergence_delta=True)
                ok = (delta.abs() <= delta_tol * (fx - fb).abs().clamp(min=0.01)).all()
                if ok or used >= max_n_steps:
                    break
                used *= 2
            delta = delta.detach().cpu().numpy()
        elif method == "saliency":
            attr = Saliency(f).attribute(tuple(t.clone().requires_grad_() for t in x), target=tgt, abs=True,
                                         additional_forward_args=extra)
        else:
            attr, tok_attr, step_attr = _ablate(model, f, x, baselines, tgt, extra, names, modalities, perturbations_per_eval)

    feats = {m: torch.where(real[..., None], a.detach(), torch.zeros((), dtype=a.dtype)).cpu().numpy()
             for m, a in zip(modalities, attr)}   # where, not *: a NaN (not measured) stays NaN only where real
    if method == "ablation":
        tokens = np.zeros((B, L, 3), np.float32)
        for m, a in zip(modalities, tok_attr):
            tokens[..., MODALITIES.index(m)] = (a[..., 0] * real).cpu().numpy()
        steps = (step_attr[0][..., 0] * real).cpu().numpy()
    else:
        tokens = np.zeros((B, L, 3), np.float32)
        for m, a in feats.items():
            tokens[..., MODALITIES.index(m)] = a.sum(-1)
        steps = tokens.sum(-1)
    return _Raw(feats, tokens, steps, fx.cpu().numpy(), fb.cpu().numpy(), delta, used)


ABLATION_FEATURES = 1024   # one ablation per feature up to this many features of a modality in the window (keydoor's
#                           20 steps of 9 values: 180); beyond that modality's features are not ablated one by one
#                           (NaN), its tokens and steps are: memory-dt's 12 steps of 7x7x3 grids (1,764) took 16 s
#                           with the randomized model, a 30-step window of 4x84x84 frames would be 846,720 forwards


def _ablate(model, f, x, baselines, tgt, extra, names, modalities, ppe):
    """FeatureAblation at three granularities: each feature, each token, each whole timestep."""
    fa = FeatureAblation(f)
    L = x[0].shape[1]
    pos = torch.arange(L)[:, None]
    feat_masks, offset, skipped = [], 0, []
    for t in x:
        n = t.shape[-1]
        if L * n > ABLATION_FEATURES:   # one group per token here: its features are NaN below
            feat_masks.append((offset + pos).expand(L, n)[None])
            offset += L
            skipped.append(True)
        else:
            feat_masks.append((offset + pos * n + torch.arange(n)[None, :])[None])
            offset += L * n
            skipped.append(False)
    tok_masks = tuple((pos * 3 + MODALITIES.index(m)).expand(L, t.shape[-1])[None] for m, t in zip(modalities, x))
    step_masks = tuple(pos.expand(L, t.shape[-1])[None] for t in x)
    kw = dict(baselines=baselines, target=tgt, additional_forward_args=extra, perturbations_per_eval=ppe)
    with inference(model):   # perturbations only: no gradient
        feat = fa.attribute(x, feature_mask=tuple(feat_masks), **kw)
        tok = fa.attribute(x, feature_mask=tok_masks, **kw)
        step = fa.attribute(x, feature_mask=step_masks, **kw)
    feat = tuple(torch.full_like(a, float("nan")) if skip else a for a, skip in zip(feat, skipped))
    return feat, tok, step


def map_spearman(trained: AttributionMap, randomized: AttributionMap, mask: np.ndarray) -> float:
    """Spearman rank correlation of two maps' |feature attributions| at the real positions `mask` [L]."""
    return _spearman(trained.flat(mask), randomized.flat(mask))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.abs(a), np.abs(b)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def attribute_steps(agent, dataset, abs_steps, target: str = "action", method: str = "ig", action_dim: int = 0,
                    randomized: bool = True, seed: int = 0, n_steps: int = 32, data: TrainingData | None = None,
                    baseline: Baseline | None = None, modalities: tuple | None = None, **kwargs) -> list[Attribution]:
    """Attribution of `target` at each absolute dataset step in `abs_steps` (one batched computation).

    Discrete actions: the logit of the logged action; continuous: action dimension `action_dim`.
    modalities: attribute only these of the agent's inputs (e.g. ("state",)), the others held at their logged values
    (IG's path then runs over the states alone, as spatial credit's does); default every input the agent reads."""
    if target not in HEADS:
        raise ValueError(f"unknown target '{target}' (known: {', '.join(HEADS)}).")
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}' (known: {', '.join(METHODS)}).")
    if target not in targets_of(agent):
        if agent.has("q_values"):
            raise ValueError(f"a value-based agent's outputs are Q of the logged action ('q') and V(s) ('v'), not "
                             f"'{target}'.")
        if target in Q_TARGETS:
            raise ValueError(f"target '{target}' needs a value-based agent (Q-values); a {agent.kind} agent has none.")
        raise ValueError(f"the {agent.kind.upper()} baseline predicts only actions; target '{target}' needs a "
                         f"Decision Transformer.")
    if agent.has("q_values") and not agent.discrete:
        raise ValueError("attribution of Q and V covers discrete-action value agents (q, drqn); a continuous one reads "
                         "the action as an input too, which these adapters do not pass.")
    data = data if data is not None else training_data(agent, dataset)
    baseline = baseline or dataset_baseline(agent, data)
    abs_steps = np.atleast_1d(np.asarray(abs_steps, np.int64))
    if abs_steps.size == 0 or abs_steps.min() < 0 or abs_steps.max() >= len(data.obs):
        raise ValueError(f"steps must lie in 0..{len(data.obs) - 1} (dataset steps).")
    if agent.has("recurrent") and len(abs_steps) > 1:   # prefixes of different lengths: one at a time
        return [r for s in abs_steps for r in attribute_steps(agent, dataset, [s], target, method, action_dim, randomized,
                                                              seed, n_steps, data, baseline, modalities, **kwargs)]
    model, inputs, reads, names, mask, act_names = model_inputs(agent, data, abs_steps)
    if modalities is not None:
        if not modalities or any(m not in reads for m in modalities):
            raise ValueError(f"modalities must be some of the inputs this agent reads ({', '.join(reads)}), got "
                             f"{', '.join(map(str, modalities)) or 'none'}.")
        names = {m: names[m] for m in reads if m in modalities}
    modalities = tuple(m for m in reads if modalities is None or m in modalities)
    if target in ("action", "q") and agent.discrete:
        index = torch.as_tensor(np.asarray(data.actions)[abs_steps], dtype=torch.long)
        label = "logit of the logged action" if target == "action" else "Q of the logged action"
    elif target == "action":
        if not 0 <= action_dim < agent.act_dim:
            raise ValueError(f"action_dim must lie in 0..{agent.act_dim - 1}, got {action_dim}.")
        index, label = action_dim, f"action dimension '{act_names[action_dim]}'"
    else:
        index = None
        label = {"return": "return prediction for t+1 (a_t token)",
                 "value": "value prediction (return-to-go hidden)", "v": "V(s), the state's value"}[target]
    base_text = baseline.description if "return-to-go" in modalities else baseline.description.split(", mean return")[0]
    raw = attribute_inputs(model, inputs, target, method, baseline, index, modalities, n_steps=n_steps, **kwargs)
    rnd = None
    if randomized:
        rmodel = randomized_copy(agent, seed)
        rmodel = adapter(agent)(rmodel)
        rnd = attribute_inputs(rmodel, inputs, target, method, baseline, index, modalities, n_steps=n_steps, **kwargs)
    episodes = np.searchsorted(data.starts, abs_steps, side="right") - 1
    results = []
    L = mask.shape[1]
    for b, (s, e) in enumerate(zip(abs_steps, episodes)):
        start, end = int(data.starts[e]), int(data.ends[e])
        wsteps = np.where(mask[b], s - start - np.arange(L - 1, -1, -1), -1)
        this_label = label
        if target in ("action", "q") and agent.discrete:
            a = int(index[b])
            this_label = f"{label} ({act_names[a]})"
        tm = raw.map(b, ADDITIVE[method])
        rm = rnd.map(b, ADDITIVE[method]) if rnd is not None else None
        rho = map_spearman(tm, rm, mask[b]) if rm is not None else float("nan")
        rho_s = _spearman(tm.per_step()[mask[b]], rm.per_step()[mask[b]]) if rm is not None else float("nan")
        rewards = np.asarray(data.rewards[start:end], float)
        rtg = np.asarray(data.dataset.returns_to_go[start:end], float)
        markers = episode_markers(data.dataset, start, end)
        results.append(Attribution(method, target, this_label, int(e), int(s - start), wsteps, names, tm, rm, rho, rho_s,
                                   rewards, rtg, raw.n_steps, base_text, markers))
    return results


def attribute_step(agent, dataset, episode: int = 0, step: int | None = None, target: str = "action",
                   method: str = "ig", **kwargs) -> Attribution:
    """Attribution of `target` at `step` of `episode` (default: the episode's last step, where its final
    reward is earned, with the longest history). See attribute_steps for the options."""
    return attribute_steps(agent, dataset, [absolute_step(dataset, episode, step)], target, method, **kwargs)[0]


def absolute_step(dataset, episode: int, step: int | None) -> int:
    """The dataset row of `step` of `episode` (None: its last step), each checked against the data."""
    starts, ends = dataset.episode_starts, dataset.episode_ends
    if not 0 <= int(episode) < len(starts):
        raise ValueError(f"episode must lie in 0..{len(starts) - 1}, got {episode}.")
    length = int(ends[episode] - starts[episode])
    step = length - 1 if step is None else int(step)
    if not 0 <= step < length:
        raise ValueError(f"step must lie in 0..{length - 1} for episode {episode} (length {length}), got {step}.")
    return int(starts[episode]) + step
