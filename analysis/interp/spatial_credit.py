"""Spatial credit: which grid cells (MiniGrid) or pixels (Atari frame stacks) of every step of a Decision
Transformer's context window one of its outputs depends on, through its state encoder.

Methods come from captum, on the window's observation tensor only (returns-to-go, actions, timesteps held fixed):
  - "saliency": Saliency, |d output / d observation| (Simonyan et al. 2014);
  - "ig":       IntegratedGradients from a baseline observation (zeros in the model's input space, the dataset's mean
                observation, or a chosen raw observation put through the agent's own transform) at every real step; its
                convergence delta
                (sum of attributions - (f(x) - f(baseline))) is reported.
Targets: "action", the logit of the logged action at the window's last step; "value", the value prediction with the
return-to-go hidden (agents that have one).

Batched: every step of a window and every window of a batch get their gradient from one forward and one backward
(each window's output depends on its own inputs only, so the gradient of the sum of the B outputs is each window's
own gradient). `saliency_per_step` is the naive twin (one forward and backward per step: the step's observation is
the only input that asks for a gradient), behind tests and `cli.py bench --only spatial_saliency_window`.

Maps: per step [F, H, W]. Grids and images laid out (H, W, C) sum their channels (per cell); a frame stack (S, H, W)
keeps a map per frame and pixel (F = S). Saliency sums |gradient| over channels; IG sums signed attributions, so
per-step totals add up to f(x) - f(baseline) over the window.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients, Saliency

from models.base import inference
from models.state_encoders import ATARI_FRAMES
from models.windows import TrainingData

from analysis.core.inputs import training_data
from analysis.interp.attribution_adapters import model_inputs

METHODS = {"saliency": "saliency |∂f/∂x|", "ig": "integrated gradients"}
# IG's interpolated windows per forward: at most 2**26 input values (256 MB of float32) in one chunk, so 1,024 steps
# over a 30-step Atari window (4x84x84 each: 26 GB at once) run as chunks of 79 windows
IG_VALUES = 2 ** 26
TARGETS = {"action": "action_preds", "value": "value_preds"}


@dataclass
class SpatialCredit:
    """One output's credit on the observation of every step of one window (oldest step first)."""

    method: str
    target: str
    target_label: str
    episode: int
    step: int                      # the explained episode step (the window's last)
    window_steps: np.ndarray       # [L] episode step per position; -1 for left padding
    maps: np.ndarray               # [L, F, H, W] credit per frame and cell / pixel (0 on padding)
    layout: str                    # "cells" (grids) | "pixels" (images) | "frames" (frame stacks [S, H, W])
    observations: np.ndarray       # [L, *dataset obs shape] the raw observations the agent saw (zeros on padding)
    output: float                  # f(x)
    baseline_output: float         # f(baseline)
    delta: float | None = None     # IG: sum(attributions) - (f(x) - f(baseline))
    n_steps: int | None = None
    baseline: str = ""

    @property
    def mask(self) -> np.ndarray:
        return self.window_steps >= 0

    @property
    def totals(self) -> np.ndarray:
        """[L] the credit of each step's whole observation (IG: signed, summing to f(x) - f(baseline))."""
        return self.maps.reshape(len(self.maps), -1).sum(1)

    def summed(self) -> np.ndarray:
        """[F, H, W] the map summed over the window's real steps."""
        return self.maps[self.mask].sum(0)

    def steps_frame(self) -> pd.DataFrame:
        """One row per real step: episode step, steps back, total credit, its share of the window's |credit|."""
        m = self.mask
        tot = self.totals[m]
        absolute = np.abs(self.maps[m]).reshape(int(m.sum()), -1).sum(1)
        return pd.DataFrame({"episode": self.episode, "explained_step": self.step, "step": self.window_steps[m],
                             "steps_back": self.step - self.window_steps[m], "total": tot,
                             "abs_total": absolute, "share": absolute / absolute.sum() if absolute.sum() > 0 else np.nan})

    def to_frame(self) -> pd.DataFrame:
        """One row per real step and cell / pixel (frames summed for a frame stack): step, row, col, credit."""
        m = self.mask
        maps = self.maps[m].sum(1)                    # [L', H, W]
        L, H, W = maps.shape
        steps = np.repeat(self.window_steps[m], H * W)
        rows, cols = np.divmod(np.tile(np.arange(H * W), L), W)
        return pd.DataFrame({"episode": self.episode, "explained_step": self.step, "step": steps,
                             "steps_back": self.step - steps, "row": rows, "col": cols, "credit": maps.ravel()})


# ---- layout: how an agent's observation tensor becomes maps -----------------------------------------------------
def observation_layout(agent) -> tuple[tuple[int, ...], str]:
    """(the observation's shape as the encoder reads it, its layout); one sentence for an agent that reads vectors."""
    shape = tuple(agent.config.hparams.get("obs_shape") or ()) or (agent.obs_dim,)
    if agent.config.hparams.get("state_encoder") == "atari_conv":
        return ATARI_FRAMES, "frames"
    if len(shape) == 2:
        return shape, "pixels"
    if len(shape) == 3:
        if shape[1] == shape[2] and shape[0] < shape[1] and shape[-1] not in (1, 3, 4):
            return shape, "frames"   # (S, H, W): a frame stack, channels first as the DT paper stacks them
        return shape, "cells" if max(shape[:2]) <= 32 else "pixels"
    raise ValueError(f"spatial credit needs an agent that reads grids, images or frame stacks; this one reads "
                     f"observations of shape {shape}.")


def to_maps(attr: torch.Tensor, shape: tuple[int, ...], layout: str) -> torch.Tensor:
    """attr [B, L, *shape] -> [B, L, F, H, W]: channels (H, W, C) summed per cell, frame stacks kept per frame."""
    B, L = attr.shape[:2]
    attr = attr.reshape(B, L, *shape)
    if len(shape) == 2:
        return attr[:, :, None]
    if layout == "frames":
        return attr
    return attr.sum(-1)[:, :, None]


def applies(agent, dataset) -> bool:
    """True for a Decision Transformer that reads grids, images or frame stacks, with a dataset of them (the Credit
    page shows its spatial section only then)."""
    if agent is None or dataset is None or not agent.has("step_tokens") or not getattr(dataset, "shaped", False):
        return False
    try:
        observation_layout(agent)
    except ValueError:
        return False
    return True


# ---- the core: windows already as model inputs --------------------------------------------------------------
def _forward(model, head: str, rtg_known: bool):
    def f(states, actions, returns_to_go, timesteps, attention_mask):
        out = model(states, actions, returns_to_go, timesteps, attention_mask, rtg_known=rtg_known)
        return getattr(out, head)[:, -1]
    return f


def _args(inputs: dict) -> tuple:
    return inputs["actions"], inputs["returns_to_go"], inputs["timesteps"], inputs["attention_mask"]


def spatial_attribute(model, inputs: dict, target_index, shape: tuple[int, ...], layout: str, target: str = "action",
                      method: str = "saliency", baseline_states: torch.Tensor | None = None, n_steps: int = 32,
                      internal_batch_size: int | None = None, delta_tol: float = 0.01,
                      max_n_steps: int = 1024) -> dict:
    """Credit of `target` at the last position of B windows on their observations, all steps and windows at once.

    inputs: forward kwargs [B, L, ...] (states normalised, [B, L, *shape] or flat); target_index: [B] action index.
    baseline_states: [*shape] in the model's input space (default zeros), used at real steps; padding keeps its own.
    IG: n_steps is doubled until every window's |delta| <= delta_tol * max(|f(x) - f(baseline)|, 0.01) or
    max_n_steps is reached (a saturating encoder needed 128 Gauss-Legendre steps for 1e-6 where 32 left 100%).
    Returns maps [B, L, F, H, W], output / baseline_output / delta [B] (numpy), n_steps (IG: the steps used)."""
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}' (known: {', '.join(METHODS)}).")
    if target not in TARGETS:
        raise ValueError(f"unknown target '{target}' (known: {', '.join(TARGETS)}).")
    states = inputs["states"].float()
    B, L = states.shape[:2]
    states = states.reshape(B, L, *shape)
    real = inputs["attention_mask"].bool().reshape(B, L, *([1] * len(shape)))
    base = torch.zeros(shape) if baseline_states is None else torch.as_tensor(baseline_states, dtype=torch.float32)
    base = torch.where(real, base.reshape(shape).to(states.device).expand_as(states), states)
    tgt = torch.as_tensor(target_index, dtype=torch.long).reshape(-1).expand(B) if target == "action" \
        else torch.zeros(B, dtype=torch.long)
    f = _forward(model, TARGETS[target], target != "value")
    extra = _args(inputs)
    delta = None
    with inference(model, grad=True):
        with inference(model):
            fx = f(states, *extra).gather(1, tgt[:, None])[:, 0]
            fb = f(base, *extra).gather(1, tgt[:, None])[:, 0]
        if method == "saliency":
            attr = Saliency(f).attribute(states.clone().requires_grad_(), target=tgt, abs=True,
                                         additional_forward_args=extra)
        else:   # as attribution.py: n_steps doubled until |delta| <= delta_tol * max(|f(x) - f(b)|, 0.01)
            ig = IntegratedGradients(f)
            while True:
                rows = internal_batch_size or min(B * n_steps, max(B, IG_VALUES // max(states[0].numel(), 1)))
                attr, delta = ig.attribute(states, base, target=tgt, additional_forward_args=extra, n_steps=n_steps,
                                           internal_batch_size=rows, return_convergence_delta=True)
                if (delta.abs() <= delta_tol * (fx - fb).abs().clamp(min=0.01)).all() or n_steps >= max_n_steps:
                    break
                n_steps *= 2
            delta = delta.detach().cpu().numpy()
    attr = attr.detach() * real
    return {"maps": to_maps(attr, shape, layout).cpu().numpy(), "output": fx.detach().cpu().numpy(),
            "baseline_output": fb.detach().cpu().numpy(), "delta": delta, "n_steps": n_steps}


def saliency_per_step(model, inputs: dict, target_index, shape: tuple[int, ...], layout: str,
                      target: str = "action") -> np.ndarray:
    """The naive twin of spatial_attribute's saliency: for each window and each real step, one forward and one
    backward in which only that step's observation asks for a gradient. Returns maps [B, L, F, H, W]."""
    states = inputs["states"].float()
    B, L = states.shape[:2]
    states = states.reshape(B, L, *shape)
    real = inputs["attention_mask"].bool()
    f = _forward(model, TARGETS[target], target != "value")
    idx = torch.as_tensor(target_index, dtype=torch.long).reshape(-1).expand(B) if target == "action" \
        else torch.zeros(B, dtype=torch.long)
    out = torch.zeros(B, L, *shape)
    with inference(model, grad=True):
        for b in range(B):
            extra = tuple(t[b:b + 1] for t in _args(inputs))
            for t in range(L):
                if not real[b, t]:
                    continue
                leaf = states[b:b + 1, t:t + 1].detach().clone().requires_grad_()
                x = torch.cat([states[b:b + 1, :t], leaf, states[b:b + 1, t + 1:]], 1)
                y = f(x, *extra)[0, idx[b]]
                (g,) = torch.autograd.grad(y, leaf)
                out[b, t] = g[0, 0].abs()
    return to_maps(out, shape, layout).numpy()


# ---- on a dataset's logged steps ------------------------------------------------------------------------------
def baseline_input(agent, baseline, shape: tuple[int, ...]) -> tuple[torch.Tensor | None, str]:
    """'zeros' (the model's input space: after the agent's normalisation) or a raw observation [*shape] put through
    the agent's own transform, with a description."""
    if baseline is None or (isinstance(baseline, str) and baseline == "zeros"):
        return None, "zeros (in the model's input space)"
    raw = np.asarray(baseline)
    if raw.size != int(np.prod(shape)):
        raise ValueError(f"the baseline observation must have the agent's observation shape {tuple(shape)}, got "
                         f"shape {raw.shape}.")
    transform = getattr(agent, "obs_transform", None)
    x = transform(raw.reshape(1, *(agent.config.hparams.get("obs_shape") or shape))) if transform else raw
    return torch.as_tensor(np.asarray(x, np.float32)).reshape(shape), "a chosen observation"


def spatial_credit(agent, dataset, abs_steps, target: str = "action", method: str = "saliency", baseline="zeros",
                   n_steps: int = 32, data: TrainingData | None = None) -> list[SpatialCredit]:
    """Spatial credit of `target` at each absolute dataset step in `abs_steps` (one batched computation).
    baseline (IG): "zeros" (in the model's input space), "mean" (the dataset's mean observation, the per-token credit's
    default: analysis/interp/attribution.py) or a raw observation."""
    if not agent.has("step_tokens"):
        raise ValueError("spatial credit reads a Decision Transformer's window of observations; this agent has none.")
    if target == "value" and not agent.has("value"):
        raise ValueError("this agent predicts no value; explain its action instead.")
    shape, layout = observation_layout(agent)
    if not getattr(dataset, "shaped", False):
        raise ValueError("spatial credit needs a dataset whose observations are grids, images or frame stacks.")
    data = data if data is not None else training_data(agent, dataset)
    abs_steps = np.atleast_1d(np.asarray(abs_steps, np.int64))
    if abs_steps.size == 0 or abs_steps.min() < 0 or abs_steps.max() >= dataset.n_transitions:
        raise ValueError(f"steps must lie in 0..{dataset.n_transitions - 1} (dataset steps).")
    model, inputs, _, _, mask, act_names = model_inputs(agent, data, abs_steps)
    index = np.asarray(data.actions)[abs_steps].astype(np.int64) if agent.discrete else np.zeros(len(abs_steps), np.int64)
    if isinstance(baseline, str) and baseline == "mean":   # the per-token credit's default (attribution.dataset_baseline)
        from analysis.interp.attribution import shaped_mean

        base, base_text = torch.as_tensor(shaped_mean(data)).reshape(shape), "the dataset's mean observation"
    else:
        base, base_text = baseline_input(agent, baseline, shape)
    raw = spatial_attribute(model, inputs, index, shape, layout, target, method, base, n_steps)
    episodes = np.searchsorted(data.starts, abs_steps, side="right") - 1
    L = mask.shape[1]
    results = []
    for b, (s, e) in enumerate(zip(abs_steps, episodes)):
        start = int(data.starts[e])
        wsteps = np.where(mask[b], s - start - np.arange(L - 1, -1, -1), -1)
        obs = np.zeros((L, *dataset.obs_shape), dataset.observations.dtype)
        real = np.flatnonzero(mask[b])
        obs[real] = dataset.observations[start + wsteps[real]]
        if target == "action":
            label = f"logit of the logged action ({act_names[int(index[b])]})" if agent.discrete else "action dimension 0"
        else:
            label = "value prediction (return-to-go hidden)"
        results.append(SpatialCredit(method, target, label, int(e), int(s - start), wsteps, raw["maps"][b], layout,
                                     obs, float(raw["output"][b]), float(raw["baseline_output"][b]),
                                     None if raw["delta"] is None else float(raw["delta"][b]),
                                     raw["n_steps"] if method == "ig" else None, base_text if method == "ig" else ""))
    return results


def spatial_credit_step(agent, dataset, episode: int = 0, step: int | None = None, **kwargs) -> SpatialCredit:
    """Spatial credit at `step` of `episode` (default: the episode's last step). See spatial_credit for the options."""
    from analysis.interp.attribution import absolute_step

    return spatial_credit(agent, dataset, [absolute_step(dataset, episode, step)], **kwargs)[0]
