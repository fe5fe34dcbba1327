"""Model inputs for analyses: a Dataset's episodes cut into an agent's context windows, ready for forward().

Every analysis of a Decision Transformer over logged data starts here, so windows are built one way
(models/windows.py: left-padded, absolute timesteps, the agent's own normalisation and RTG scale).
"""
from __future__ import annotations

import numpy as np
import torch

import hashlib
import inspect

from models.errors import AgentError
from models.checks import check_dataset
from models.windows import TrainingData, gather_windows

from analysis.core.cache import shared
from analysis.core.identity import dataset_key

PREPARED_KEPT = 4   # the few most recent (dataset, normalisation) pairs


def training_data(agent, dataset) -> TrainingData:
    """The dataset normalised with the agent's statistics (checked to fit the agent first)."""
    check_dataset(agent, dataset)
    c = agent.config
    mean = np.asarray(c.state_mean if c.state_mean is not None else np.zeros(agent.obs_dim), np.float32)
    std = np.asarray(c.state_std if c.state_std is not None else np.ones(agent.obs_dim), np.float32)
    # Every figure of a page starts here: on a 1M-step dataset the build is 0.1-0.4 s and 60 MB, so the
    # most recent few are shared objects of the one cache, keyed on content, with read-only arrays (sessions
    # share them; none may write); a pickled copy per call would cost what it saves.
    key = (dataset_key(dataset), hashlib.sha1(mean.tobytes() + std.tobytes()).hexdigest(), float(c.rtg_scale),
           int(c.max_ep_len))

    def build() -> TrainingData:
        data = TrainingData.build(dataset, mean, std, c.rtg_scale, c.max_ep_len, getattr(agent, "obs_transform", None))
        for arr in (data.obs, data.rtg, data.timesteps):
            arr.setflags(write=False)
        return data

    if dataset.shaped:   # the raw (maybe mapped) array is kept, nothing is copied; the agent's obs_transform is in it
        return build()

    return shared("training_data", key, build, PREPARED_KEPT)


def step_windows(agent, data: TrainingData, steps: np.ndarray, context: int | None = None,
                 rtg_shift: float = 0.0, embed: bool = False) -> dict[str, torch.Tensor]:
    """forward() kwargs for windows ending at absolute dataset steps `steps` [B] (one window per step).

    rtg_shift (raw return units) is added to every return-to-go token: the offline what-if of asking
    for more or less return along the logged trajectory.

    embed=True, for analyses that read outputs and activations but never take a gradient or change the states: where
    `embeds_states` holds, the states come embedded (`state_embeds`, `states` None), each distinct frame of the batch
    transformed and embedded once and its embedding indexed into the windows. Copying frames into [B, K, 4, 84, 84]
    float32 windows and running the conv stack per window position were most of an Atari page's forward."""
    steps = np.asarray(steps, np.int64)
    episodes = np.searchsorted(data.starts, steps, side="right") - 1
    K = int(context or agent.context_length)
    if embed and embeds_states(agent, data):
        return embedded_inputs(agent, gather_windows(data, episodes, steps, K, distinct_frames=True), rtg_shift)
    w = gather_windows(data, episodes, steps, K)
    if rtg_shift:
        w["rtg"] = shifted_rtg(agent, w, rtg_shift)
    return agent.window_inputs(w)


def shifted_rtg(agent, w: dict, shift: float) -> np.ndarray:
    """A window's return-to-go with `shift` raw return units added at its real steps (pads stay 0)."""
    return np.where(w["mask"], w["rtg"] + np.float32(shift / agent.config.rtg_scale), 0).astype(np.float32)


def embeds_states(agent, data: TrainingData) -> bool:
    """Whether step_windows(embed=True) embeds the states: shaped observations, a DT whose forward takes state_embeds
    (not a user's subclass with its own forward) and no DTI padding (its pad steps are states)."""
    return (data.obs_transform is not None and getattr(getattr(agent, "cfg", None), "padding", None) != "dti"
            and "state_embeds" in inspect.signature(agent.forward).parameters)


def embedded_inputs(agent, w: dict, rtg_shift: float = 0.0) -> dict[str, torch.Tensor]:
    """forward() kwargs from a gather_windows(distinct_frames=True) dict: each frame embedded once; pads get the
    embedding of a zero state, as a zero-padded window's do."""
    frames, index = w["frames"], w["frame_index"]
    rest = {k: v for k, v in w.items() if k not in ("frames", "frame_index")}
    if rtg_shift:
        rest["rtg"] = shifted_rtg(agent, rest, rtg_shift)
    emb = torch.cat([agent.embed_state(torch.from_numpy(frames)), agent.embed_state(torch.zeros((1,) + frames.shape[1:]))])
    inputs = agent.window_inputs({**rest, "obs": np.zeros(index.shape + (0,), np.float32)})
    inputs["states"], inputs["state_embeds"] = None, emb[torch.from_numpy(np.where(index < 0, len(frames), index))]
    return inputs


WINDOW_BYTES = 256 << 20   # float32 bytes one batch of shaped-observation windows may gather ([B, K, 4, 84, 84])


def window_rows(agent, data: TrainingData, rows: int, context: int | None = None) -> int:
    """`rows` windows per batch, fewer for shaped observations: 512 windows of K=30 Atari frame stacks are 1.7 GB of
    float32, so a batch holds at most WINDOW_BYTES of them (75 at K=30)."""
    if data.obs_transform is None:
        return rows
    per = int(context or agent.context_length) * int(np.prod(data.obs.shape[1:])) * 4
    return max(1, min(rows, WINDOW_BYTES // per))


def receptive_field(agent) -> int:
    """Steps of history a DT's action at t depends on while acting. A native (banded) DT sees K steps per
    layer, and each key was itself computed from K steps before it: n_layer * K in all (what its cached
    rollout computes). An HF import attends to its last K steps only (DecisionTransformer.receptive_field);
    other agents: their context length."""
    return int(getattr(agent, "receptive_field", agent.context_length))


def episode_steps(data: TrainingData, episode: int) -> np.ndarray:
    """Absolute step indices of one episode."""
    return np.arange(data.starts[episode], data.ends[episode])


def last_step_outputs(agent, inputs: dict[str, torch.Tensor]):
    """A DT's outputs at each window's last s_t token only (action_preds and value_preds [B, 1, ...]), without
    the work nothing reads: the last a_t token and the last block for every other token (a third of a
    3-layer model). The same numbers as forward()[:, -1] up to float rounding."""
    if not agent.has("partial_forward"):   # no partial forward: the whole forward, its last step read
        out = agent(**inputs)
        out.action_preds, out.value_preds = out.action_preds[:, -1:], out.value_preds[:, -1:]
        return out
    out, _ = agent.run_with_cache(inputs, names=[], last_state_only=True)
    return out


def default_target(agent) -> float:
    """The return a return-conditioned agent is asked for by default: the best return of its training data."""
    d = agent.config.dataset
    if "return_max" not in d:
        raise AgentError("the agent's config has no training return range; pass target_return.")
    return float(d["return_max"])


def action_scores(agent, dataset, steps, outputs: torch.Tensor) -> np.ndarray:
    """Scores of an agent's action `outputs` at logged `steps`, per step: 1/0 correct (discrete, argmax) or squared
    error averaged over dims (continuous, in [-1, 1])."""
    if agent.discrete:
        return (outputs.argmax(-1).numpy() == dataset.actions[steps]).astype(np.float64)
    target = agent.actions_to_unit(torch.as_tensor(dataset.actions[steps]).reshape(len(steps), -1))
    return ((outputs - target) ** 2).mean(-1).double().numpy()
