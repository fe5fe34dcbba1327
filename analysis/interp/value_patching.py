"""Activation patching on a value-based agent's Q output (issue 24, item 3): what a value agent carries from one
input to its Q, the way analysis/interp/patching.py asks it of a Decision Transformer.

- **Markov agents** (`patch_units`): a clean observation (episode A at step t) and a corrupted one (episode B at step
  t', default t). Each hidden unit of each `hidden.{i}` layer (the MLP's named activations) is patched from the clean
  run into the corrupted one, one unit per row of one batched forward, and the whole layer at once; the output is Q
  of the clean step's logged action ("q") or V(s) ("v"), and the effect (patched − corrupted) / (clean − corrupted):
  1 = that unit alone restores the clean output. Equal outputs are refused with a sentence.
- **Recurrent agents** (`patch_memory`, drqn): the recurrent state after step t of episode B (the receiver) is
  replaced by episode A's (the donor's) state after its step t, and B runs on from there with its own observations;
  the change in Q of B's logged action (or V) at every later step t' >= t says how long what the state carried at t
  lasts. At t' = t the patched output is the donor's own (the head reads the state alone). The state is passed as the
  `hidden` argument of the agent's forward, as a GRU's is (models/baselines.GRUPolicy: forward(obs, prev_actions,
  hidden) -> (outputs, hidden)): an intervention on `gru.hidden` would change only what the head reads at that step.

Both read Q and V as the named activations `head.q` / `head.v` of `agent.run_with_cache`; interventions are per call.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from models.base import inference
from models.errors import AgentError

from analysis.interp.values import check_episode

OUTPUTS = {"q": "Q of the logged action", "v": "V(s)"}


def _check(agent, output: str, capability: str) -> None:
    if not agent.has("q_values"):
        raise AgentError(f"patching Q and V needs a value-based agent; a {agent.kind} agent has no Q-values.")
    if not agent.discrete:
        raise AgentError("patching Q and V covers discrete-action value agents (q, drqn); a continuous one reads the "
                         "action as an input too.")
    if not agent.has(capability):
        what = {"markov": "a Markov value agent (q)", "recurrent": "a recurrent value agent (drqn)"}[capability]
        raise AgentError(f"this patching needs {what}; {agent.kind} is "
                         f"{'recurrent' if agent.has('recurrent') else 'Markov'}.")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)} (Q of the logged action, V), got {output!r}.")


def _step_row(dataset, episode: int, step: int, what: str) -> int:
    start, end = check_episode(dataset, episode)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 0 <= int(step) < end - start:
        raise ValueError(f"{what} must lie in 0..{end - start - 1} for episode {episode} (length {end - start}), "
                         f"got {step!r}.")
    return start + int(step)


def _obs(agent, dataset, rows) -> torch.Tensor:
    return agent.normalize(torch.as_tensor(np.asarray(dataset.observations[rows], np.float32)))


def _read(cache, output: str, action) -> torch.Tensor:
    q, v = cache["head.q"], cache["head.v"]
    if output == "v":
        return v.reshape(q.shape[:-1])
    return q.gather(-1, torch.as_tensor(action, dtype=torch.long).reshape(*q.shape[:-1], 1).expand(*q.shape[:-1], 1))[..., 0]


# ---- Markov agents: one hidden unit at a time ----------------------------------------------------------------
@dataclass
class UnitPatching:
    episode: int
    step: int
    corrupt_episode: int
    corrupt_step: int
    output: str
    label: str
    clean: float
    corrupted: float
    layers: list[str]              # hidden.{i}
    effects: list[np.ndarray]      # per layer: [n_units] normalised effect of patching that unit alone
    whole: np.ndarray              # [n_layers] the whole layer patched at once

    def to_frame(self) -> pd.DataFrame:
        rows = [{"layer": layer, "unit": j, "effect": float(e)} for layer, eff in zip(self.layers, self.effects)
                for j, e in enumerate(eff)]
        rows += [{"layer": layer, "unit": "all", "effect": float(w)} for layer, w in zip(self.layers, self.whole)]
        return pd.DataFrame(rows)


def patch_units(agent, dataset, episode: int = 0, step: int = 0, corrupt_episode: int = 1,
                corrupt_step: int | None = None, output: str = "q") -> UnitPatching:
    """Each hidden unit of a Markov value agent patched from the clean observation into the corrupted one (module
    docstring); effects normalised by clean − corrupted of Q of the clean step's logged action, or V."""
    _check(agent, output, "markov")
    corrupt_step = step if corrupt_step is None else corrupt_step
    clean_row = _step_row(dataset, episode, step, "step")
    corrupt_row = _step_row(dataset, corrupt_episode, corrupt_step, "the corrupted step")
    action = int(dataset.actions[clean_row])
    layers = [n for n in agent.activation_names() if n.startswith("hidden.")]
    if not layers:
        raise AgentError(f"the {agent.kind} agent names no hidden layers (hidden.0, ...) to patch.")
    x = _obs(agent, dataset, [clean_row, corrupt_row])
    with inference(agent):
        _, cache = agent.run_with_cache(x, names=layers + ["head.q", "head.v"])
        out = _read(cache, output, [action, action])
        clean, corrupted = float(out[0]), float(out[1])
        if abs(clean - corrupted) < 1e-9:
            raise ValueError(f"the clean and corrupted inputs give the same {OUTPUTS[output]} ({clean:.4g}): nothing to "
                             "restore; pick another corrupted episode or step.")
        effects, whole = [], []
        for layer in layers:
            c_act = cache[layer][0]
            n = c_act.shape[-1]
            rows = x[1:].expand(n + 1, -1)   # one row per unit, and the whole layer last
            mask = torch.cat([torch.eye(n, dtype=torch.bool), torch.ones(1, n, dtype=torch.bool)])

            def patch(t, mask=mask, c_act=c_act):
                return torch.where(mask, c_act.expand_as(t), t)

            _, pc = agent.run_with_cache(rows, names=["head.q", "head.v"], interventions={layer: patch})
            patched = _read(pc, output, [action] * (n + 1)).double().numpy()
            eff = (patched - corrupted) / (clean - corrupted)
            effects.append(eff[:n])
            whole.append(eff[n])
    return UnitPatching(int(episode), int(step), int(corrupt_episode), int(corrupt_step), output,
                        f"{OUTPUTS[output]}" + (f" (action {action})" if output == "q" else ""), clean, corrupted,
                        layers, effects, np.asarray(whole))


# ---- recurrent agents: the state carried from one episode into another ----------------------------------------------
@dataclass
class MemoryPatching:
    episode: int                   # the donor (clean state)
    corrupt_episode: int           # the receiver, run on with the donor's state
    step: int                      # the state after this step is patched
    output: str
    label: str
    steps: np.ndarray              # [n] receiver steps t' >= step
    corrupted: np.ndarray          # [n] the receiver's own output
    patched: np.ndarray            # [n] with the donor's state from `step`
    donor: float                   # the donor's own output at `step` (what the patched output is there)

    @property
    def change(self) -> np.ndarray:
        return self.patched - self.corrupted

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"step": self.steps, "corrupted": self.corrupted.astype(np.float64),
                             "patched": self.patched.astype(np.float64), "change": self.change.astype(np.float64)})


def _prev(agent, actions: np.ndarray) -> torch.Tensor:
    a = F.one_hot(torch.as_tensor(np.asarray(actions, np.int64)), int(agent.config.n_actions)).float()[None]
    return torch.cat([torch.zeros_like(a[:, :1]), a[:, :-1]], dim=1)


def patch_memory(agent, dataset, episode: int = 0, step: int = 0, corrupt_episode: int = 1,
                 output: str = "q") -> MemoryPatching:
    """A recurrent value agent's state after `step` of `corrupt_episode` replaced by `episode`'s, and the change in Q
    of the receiver's logged action (or V) at each later step of the receiver (module docstring)."""
    _check(agent, output, "recurrent")
    a0, a1 = check_episode(dataset, episode)
    b0, b1 = check_episode(dataset, corrupt_episode)
    if int(episode) == int(corrupt_episode):
        raise ValueError("the donor and the receiver are the same episode: pick another corrupted episode.")
    t = int(step)
    if isinstance(step, bool) or not 0 <= t < min(a1 - a0, b1 - b0):
        raise ValueError(f"step must lie in 0..{min(a1 - a0, b1 - b0) - 1}: both episodes must have it (lengths "
                         f"{a1 - a0} and {b1 - b0}), got {step!r}.")
    obs_a, obs_b = _obs(agent, dataset, np.arange(a0, a0 + t + 1))[None], _obs(agent, dataset, np.arange(b0, b1))[None]
    prev_a = _prev(agent, dataset.actions[a0:a0 + t + 1])
    acts_b = np.asarray(dataset.actions[b0:b1], np.int64)
    prev_b = _prev(agent, acts_b)
    names = ["head.q", "head.v"]
    with inference(agent):
        (_, h_donor), donor = agent.run_with_cache((obs_a, prev_a), names=names)
        _, base = agent.run_with_cache((obs_b, prev_b), names=names)
        corrupted = _read(base, output, acts_b[None])[0, t:].double().numpy()
        donor_out = float(_read(donor, output, np.full((1, t + 1), acts_b[t]))[0, t])
        later = [donor_out]
        if t + 1 < b1 - b0:
            _, run = agent.run_with_cache((obs_b[:, t + 1:], prev_b[:, t + 1:], h_donor), names=names)
            later += _read(run, output, acts_b[None, t + 1:])[0].double().numpy().tolist()
    return MemoryPatching(int(episode), int(corrupt_episode), t, output, OUTPUTS[output], np.arange(t, b1 - b0),
                          corrupted, np.asarray(later), donor_out)
