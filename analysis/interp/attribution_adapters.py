"""Per-model adapters for attribution: each agent family behind one signature, the Decision Transformer's
forward(states, actions, returns_to_go, timesteps, attention_mask, rtg_known=...), so captum sees every
model as a function of the same named inputs.

- Decision Transformer: itself, on its window of K steps ending at the explained step.
- MLP (Markov, K = 1): `Markov` reads only the last state of a one-step window.
- GRU: `Recurrent` reads the episode so far; the action input at position i is a_i, which the GRU reads
  (as its previous action) at step i + 1. One window at a time (prefixes differ in length).
- Value-based agents (capability "q_values", issue 24): `MarkovQ` (q, on the current observation) and `RecurrentQ`
  (drqn, the episode so far, as the GRU) read the agent's named activations `head.q` [.., n_actions] and `head.v`
  through `run_with_cache`, so captum sees Q and V as outputs `q_preds` / `v_preds`. They call the agent's forward as
  the MLP's and GRU's are called: forward(normalised obs) (Markov) and forward(normalised obs, prev_actions) with
  prev_actions from `agent.prev_actions` semantics (one-hot a_{t-1}, zeros at t = 0).

`model_inputs` turns windows of logged steps into (model, inputs, modalities, feature names, mask, action
names) for analysis/interp/attribution.py. Shaped observations (grids, frame stacks) come flattened to [B, L, obs_dim]
in their own C order, which every state encoder reads (models/state_encoders.py); spatial_credit reshapes them back.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from models.windows import TrainingData, gather_windows

MODALITIES = ("return-to-go", "state", "action")   # token order of a DT step (figures.TOKEN_COLOURS keys)


class Markov(nn.Module):
    """The MLP baseline behind the DT forward signature: it sees only the last state of the window."""

    def __init__(self, mlp):
        super().__init__()
        self.mlp = mlp

    def forward(self, states, actions, returns_to_go, timesteps, attention_mask=None, rtg_known=True):
        out = self.mlp(states)
        if not self.mlp.discrete:
            out = torch.tanh(out)
        return SimpleNamespace(action_preds=out)


class Recurrent(nn.Module):
    """The GRU baseline behind the DT forward signature: the window is the episode so far; the action
    input at position i is a_i, which the GRU reads (as its previous action) at step i + 1."""

    def __init__(self, gru):
        super().__init__()
        self.gru = gru

    def forward(self, states, actions, returns_to_go, timesteps, attention_mask=None, rtg_known=True):
        prev = torch.cat([torch.zeros_like(actions[:, :1]), actions[:, :-1]], dim=1)
        out, _ = self.gru(states, prev)
        if not self.gru.discrete:
            out = torch.tanh(out)
        return SimpleNamespace(action_preds=out)


def _q_outputs(cache) -> SimpleNamespace:
    q, v = cache["head.q"], cache["head.v"]
    return SimpleNamespace(q_preds=q, v_preds=v[..., None] if v.dim() == q.dim() - 1 else v)


class MarkovQ(nn.Module):
    """A Markov value agent behind the DT forward signature: Q and V of the window's last (only) state."""

    def __init__(self, agent):
        super().__init__()
        self.agent = agent

    def forward(self, states, actions, returns_to_go, timesteps, attention_mask=None, rtg_known=True):
        _, cache = self.agent.run_with_cache(states, names=["head.q", "head.v"])
        return _q_outputs(cache)


class RecurrentQ(nn.Module):
    """A recurrent value agent (drqn) behind the DT forward signature: the window is the episode so far, the action
    input at position i is a_i, read as the previous action at step i + 1 (as `Recurrent`)."""

    def __init__(self, agent):
        super().__init__()
        self.agent = agent

    def forward(self, states, actions, returns_to_go, timesteps, attention_mask=None, rtg_known=True):
        prev = torch.cat([torch.zeros_like(actions[:, :1]), actions[:, :-1]], dim=1)
        _, cache = self.agent.run_with_cache((states, prev), names=["head.q", "head.v"])
        return _q_outputs(cache)


def adapter(agent):
    """The wrapper that puts `agent` behind the DT signature: Markov for a policy on the current observation,
    Recurrent for a recurrent one (MarkovQ / RecurrentQ for value agents), none (the identity) for an agent that reads
    (R, s, a) step tokens itself."""
    if agent.has("q_values"):
        return RecurrentQ if agent.has("recurrent") else MarkovQ
    if agent.has("markov"):
        return Markov
    if agent.has("recurrent"):
        return Recurrent
    return lambda model: model


def state_feature_names(ds) -> list[str]:
    """One name per state feature: the dataset's names for vectors; for shaped observations the feature's index in
    the observation's own shape, in the C order the flattened state keeps ("(row, col, channel)" for a grid,
    "(frame, row, col)" for a frame stack)."""
    if not getattr(ds, "shaped", False):
        return list(ds.obs_names)
    return [str(tuple(int(i) for i in idx)) for idx in np.ndindex(*ds.obs_shape)]


def model_inputs(agent, data: TrainingData, abs_steps: np.ndarray):
    """(model, inputs, modalities, feature_names, mask, action_names) for windows ending at absolute dataset steps."""
    episodes = np.searchsorted(data.starts, abs_steps, side="right") - 1
    ds = data.dataset
    if agent.discrete:
        labels = list(getattr(ds, "metadata", {}).get("action_labels") or [])
        n = int(agent.config.n_actions)
        act_names = labels if len(labels) == n else [f"action {i}" for i in range(n)]
    else:
        act_names = list(ds.act_names or [f"action_{i}" for i in range(agent.act_dim)])
    names = {"return-to-go": ["return-to-go"], "state": state_feature_names(ds), "action": act_names}
    # each model family reads its window differently (the wrappers put MLP / GRU behind the DT signature)
    if agent.has("step_tokens"):
        w = gather_windows(data, episodes, abs_steps, agent.context_length)
        inputs = agent.window_inputs(w)
        # shaped states (grids, frame stacks) flattened in their own C order: every state encoder reads both, and
        # captum then sees one feature axis per token for every observation kind
        inputs["states"] = inputs["states"].reshape(*inputs["states"].shape[:2], -1)
        return agent, inputs, MODALITIES, names, w["mask"], names["action"]
    if agent.has("markov"):
        w = gather_windows(data, episodes, abs_steps, 1)
        B = len(abs_steps)
        inputs = {"states": torch.as_tensor(w["obs"], dtype=torch.float32),
                  "actions": torch.zeros(B, 1, 0), "returns_to_go": torch.zeros(B, 1, 1),
                  "timesteps": torch.as_tensor(w["timesteps"]), "attention_mask": torch.ones(B, 1, dtype=torch.long)}
        return adapter(agent)(agent), inputs, ("state",), {"state": names["state"]}, w["mask"], names["action"]
    if agent.has("recurrent"):   # the whole episode so far (one window at a time: prefixes differ in length)
        if len(abs_steps) != 1:
            raise ValueError("recurrent attribution takes one step at a time.")
        K = int(abs_steps[0] - data.starts[episodes[0]] + 1)
        w = gather_windows(data, episodes, abs_steps, K)
        acts = torch.as_tensor(w["actions"])
        acts = (torch.nn.functional.one_hot(acts.long(), int(agent.config.n_actions)).float() if agent.discrete
                else agent.actions_to_unit(acts))
        inputs = {"states": torch.as_tensor(w["obs"], dtype=torch.float32), "actions": acts,
                  "returns_to_go": torch.zeros(1, K, 1), "timesteps": torch.as_tensor(w["timesteps"]),
                  "attention_mask": torch.ones(1, K, dtype=torch.long)}
        return (adapter(agent)(agent), inputs, ("state", "action"), {"state": names["state"], "action": names["action"]},
                w["mask"], names["action"])
    raise ValueError(f"attribution supports Decision Transformer ('dt'), MLP ('mlp'), GRU ('gru') and value-based "
                     f"(Markov or recurrent) agents, not '{agent.kind}'.")
