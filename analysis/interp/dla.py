"""Direct logit attribution and the logit lens on a Decision Transformer: what each head and MLP writes into the
residual stream that the output head reads, and at which layer the output is already decided.

**Direct logit attribution** (`direct_logit_attribution`). The residual stream at the output's token (s_t for the
action and value, a_t for the predicted return) is a sum of parts:

    resid_post(last) = embedding (blocks.0.resid_pre) + sum_i [sum_k head_out(i, k) + b_O(i) + mlp.out(i)]

(b_O(i) = `blocks[i].attn.b_O`, the attention output bias) and the output is
ln_final(resid) @ W_U + b_U = (centre(resid) * scale * ln_final.weight + ln_final.bias) @ W_U + b_U. With the final
layer norm's scale frozen at its value for this input (`ln_final.scale`), this is linear in the residual stream,
so each part's contribution is (centre(part) * scale * ln_final.weight) @ W_U, and the parts + the attention biases +
the final layer norm's bias through the head (ln_final.bias @ W_U, "ln_f bias") + the head's bias (b_U) sum exactly
to the output. W_U / b_U are `agent.W_U(output)` / `agent.b_U(output)`. The quantity decomposed is the one the head
computes linearly: the logit of one action (discrete), one action dimension *before* the tanh (continuous: the
action is tanh of this sum), the value (return-to-go hidden, as the value head is read everywhere) or the predicted
return R_{t+1}; all in the model's own units (value and return divided by rtg_scale; `units` converts). Computed in float64 from the float32 activations.

**Logit lens** (`logit_lens`): the final layer norm (not frozen: each stream is normalised on its own) and the
output head applied to every state of the residual stream (the embedding, after layer 1, ..., after the last
layer) at the output's token, for every step of an episode (batched; at most `max_steps` evenly spaced steps,
said in the result). The last row is the model's own output.

Windows are patching's (analysis/interp/patching.py): the receptive field or `context` steps, left padding dropped.
Both read the DT's weights through its accessors (models/block.py, models/decision_transformer.py): `agent.ln_final`,
`agent.output_head(output)` (its W_U / b_U), `agent.blocks[i].attn.b_O`, `agent.cfg.action_tanh` — read, never
changed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from models.base import inference

from analysis.core.cache import report
from analysis.core.inputs import step_windows, training_data
from analysis.interp.patching import TOKEN_BUDGET, check_step, readout, run, uses_last_state, window, window_steps


def _logged_action(agent, dataset, episode: int, step: int) -> int:
    return int(np.asarray(dataset.actions)[int(dataset.episode_starts[episode]) + step]) if agent.discrete else 0


def _token(agent, out, L: int, tensor: torch.Tensor) -> int:
    """Index of the output's token in an activation of the forward `run` makes for `out` ([B, T_t, ...]: the
    last T_t tokens of those it computes)."""
    tokens = 3 * L - 1 if uses_last_state(agent, out) else 3 * L
    o = 3 * (L - 1) + (2 if out.output == "return" else 1)
    return o - (tokens - tensor.shape[1])


# ---- direct logit attribution -----------------------------------------------------------------------
@dataclass
class DLA:
    """Each part's contribution to one output at one step; `parts` sum to `output`."""

    names: list[str]             # "embedding", "L1 H0", ..., "L1 MLP", "L1 attn bias", ..., "ln_f bias", "head bias"
    values: np.ndarray           # [P] contributions, model units
    heads: np.ndarray            # [n_layer, n_head]
    mlps: np.ndarray             # [n_layer]
    output: float                # what the model computes (logit, pre-tanh action, value or return), model units
    quantity: str                # what `output` is, in words
    units: float                 # model units -> raw (rtg_scale for value / return, else 1)
    episode: int
    step: int
    steps: int                   # real steps in the window

    @property
    def total(self) -> float:
        return float(self.values.sum())

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"part": self.names, "contribution": self.values, "contribution_raw": self.values * self.units,
                             "output": self.output, "quantity": self.quantity, "episode": self.episode, "step": self.step})


def direct_logit_attribution(agent, dataset, episode: int = 0, step: int | None = None, output: str = "action",
                             action: int | None = None, context: int | None = None, data=None) -> DLA:
    """Contributions of the embedding, each head, each MLP and each bias to `output` at `step` of `episode`
    (default: its middle), with the final layer norm's scale frozen (see the module docstring). action: the
    action (discrete; default the logged one) or dimension (continuous; default 0)."""
    episode, step = check_step(dataset, episode, step)
    out = readout(agent, output, action, "logit", _logged_action(agent, dataset, episode, step))
    data = data if data is not None else training_data(agent, dataset)
    inputs, L = window(agent, data, episode, step, context)
    n, h = agent.n_layer, agent.n_head
    names = ["blocks.0.resid_pre", "blocks.*.attn.head_out", "blocks.*.mlp.out", "ln_final.scale", "ln_final.out"]
    _, cache = run(agent, inputs, out, names)

    def at(name):
        t = cache[name]
        return t[0, _token(agent, out, L, t)]

    ln, head = agent.ln_final, agent.output_head(output)
    with inference(agent):
        W = agent.W_U(output)[:, out.index].double()
        w = W * (ln.weight.double() if ln.weight is not None else 1.0)
        scale = at("ln_final.scale").double()[0]

        def part(v: torch.Tensor) -> float:
            v = v.double()
            return float(((v - v.mean() if getattr(ln, "centres", True) else v) * w).sum() * scale)

        heads = np.array([[part(at(f"blocks.{i}.attn.head_out")[k]) for k in range(h)] for i in range(n)])
        mlps = np.array([part(at(f"blocks.{i}.mlp.out")) for i in range(n)])
        biases = []
        for i in range(n):
            b = agent.blocks[i].attn.b_O
            biases.append(part(b) if b is not None else 0.0)
        ln_bias = float(W @ ln.bias.double()) if ln.bias is not None else 0.0
        b_U = agent.b_U(output)
        head_bias = float(b_U[out.index]) if b_U is not None else 0.0
        model_out = float(head(at("ln_final.out"))[out.index])
        embed = part(at("blocks.0.resid_pre"))
    labels, values = ["embedding"], [embed]
    for i in range(n):
        labels += [f"L{i + 1} H{k}" for k in range(h)] + [f"L{i + 1} MLP"]
        values += list(heads[i]) + [mlps[i]]
    labels += [f"L{i + 1} attn bias" for i in range(n)] + ["ln_f bias", "head bias"]
    values += biases + [ln_bias, head_bias]
    if output == "action":
        quantity = (f"logit of action {out.index}" if agent.discrete else
                    f"action dimension {out.index} before tanh" if agent.cfg.action_tanh else
                    f"action dimension {out.index}")
    else:
        quantity = "value (return-to-go hidden)" if output == "value" else "predicted return R(t+1)"
    return DLA(labels, np.array(values), heads, mlps, model_out, quantity, out.scale, episode, step, L)


# ---- logit lens -------------------------------------------------------------------------------------
@dataclass
class LogitLens:
    """The output head read from every state of the residual stream, at each (sampled) step of an episode."""

    steps: np.ndarray            # [S] episode steps
    rows: list[str]              # "embedding", "after layer 1", ..., "after layer n"
    values: np.ndarray           # [S, R, n_out]: logits (discrete), tanh actions (continuous), raw value / return
    final: np.ndarray            # [S, n_out] the model's own output (same units)
    output: str
    discrete: bool
    index: int | None            # the action shown (None: the model's final choice at each step)
    episode: int
    sampled: bool                # True when steps are an evenly spaced sample of the episode

    @property
    def chosen(self) -> np.ndarray:
        """[S] the action index shown at each step (discrete), or the dimension."""
        if self.output != "action":
            return np.zeros(len(self.steps), int)
        if self.index is not None:
            return np.full(len(self.steps), self.index)
        return self.final.argmax(-1) if self.discrete else np.zeros(len(self.steps), int)

    @property
    def shown(self) -> np.ndarray:
        """[S, R] what the figure shows: the chosen action's probability (discrete), the action dimension, the
        value or the return."""
        v = self.values
        if self.output == "action" and self.discrete:
            v = torch.as_tensor(v).softmax(-1).numpy()
        return np.take_along_axis(v, self.chosen[:, None, None].repeat(v.shape[1], 1), -1)[..., 0]

    @property
    def label(self) -> str:
        if self.output == "action":
            if self.discrete:
                return "probability of the chosen action" if self.index is None else f"probability of action {self.index}"
            return f"action dimension {self.index or 0}"
        return "value (return-to-go hidden)" if self.output == "value" else "predicted return R(t+1)"

    @property
    def decided(self) -> np.ndarray | None:
        """[S] discrete actions: the first row from which the lens's top action is the final one at every later
        row (0 = already the embedding); None otherwise."""
        if not (self.output == "action" and self.discrete):
            return None
        agree = self.values.argmax(-1) == self.final.argmax(-1)[:, None]          # [S, R]
        later = np.flip(np.cumprod(np.flip(agree, 1), 1), 1).astype(bool)         # agrees from here on
        return len(self.rows) - later.sum(1)

    def to_frame(self) -> pd.DataFrame:
        S, R = self.shown.shape
        s, r = np.meshgrid(np.arange(S), np.arange(R), indexing="ij")
        frame = pd.DataFrame({"step": self.steps[s.ravel()], "row": np.asarray(self.rows)[r.ravel()], "layer": r.ravel(),
                              "value": self.shown.ravel(), "shown": self.label})
        if self.output == "action":
            frame.insert(3, "action", self.chosen[s.ravel()])
        return frame


def logit_lens(agent, dataset, episode: int = 0, output: str = "action", action: int | None = None,
               context: int | None = None, max_steps: int = 250, data=None, token_budget: int = TOKEN_BUDGET) -> LogitLens:
    """The output head through ln_final on every layer's residual stream at the output's token, at every step of
    `episode` (an evenly spaced sample of at most `max_steps` steps for longer episodes), batched.
    action: the action whose probability is shown (discrete; None = the model's final choice at each step) or
    the dimension (continuous; default 0)."""
    episode, _ = check_step(dataset, episode, 0)
    out = readout(agent, output, action, "logit", 0)
    index = out.index if (output == "action" and (action is not None or not agent.discrete)) else None
    data = data if data is not None else training_data(agent, dataset)
    n = int(dataset.episode_lengths[episode])
    if int(max_steps) < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}.")
    steps = np.unique(np.linspace(0, n - 1, min(n, int(max_steps))).round().astype(int))
    L = min(window_steps(agent, context), int(steps.max()) + 1)
    n_layer = agent.n_layer
    names = [f"blocks.{i}.resid_pre" for i in range(n_layer)] + [f"blocks.{n_layer - 1}.resid_post"]
    ln, head = agent.ln_final, agent.output_head(output)
    tanh = output == "action" and not agent.discrete and agent.cfg.action_tanh
    rows = max(1, int(token_budget) // (3 * L))
    values, finals = [], []
    for start in range(0, len(steps), rows):
        part = steps[start:start + rows]
        inputs = step_windows(agent, data, int(data.starts[episode]) + part, context=L)
        o, cache = run(agent, inputs, out, names)
        with inference(agent):
            resid = torch.stack([cache[nm][:, _token(agent, out, L, cache[nm])] for nm in names], 1)   # [B, R, H]
            v = head(ln(resid))
            if tanh:
                v = torch.tanh(v)
            if output == "action":
                final = o.action_preds[:, -1]
            else:
                final = (o.value_preds if output == "value" else o.return_preds)[:, -1]
        values.append(v.numpy().astype(np.float64) * out.scale)
        finals.append(final.numpy().astype(np.float64) * out.scale)
        report((start + len(part)) / len(steps), f"logit lens: {start + len(part)} of {len(steps)} steps")
    labels = ["embedding"] + [f"after layer {i + 1}" for i in range(n_layer)]
    return LogitLens(steps, labels, np.concatenate(values), np.concatenate(finals), output, bool(agent.discrete),
                     index, episode, len(steps) < n)
