"""Activation patching on a Decision Transformer: which activations carry what differs between a clean and a
corrupted input to one output.

Run the model on a clean and a corrupted input; then run the corrupted input again with one activation replaced
by its clean value, and see how far the output moves back towards the clean one:

    normalised effect = (patched - corrupted) / (clean - corrupted)

1 = that activation alone restores the clean output, 0 = it carries nothing of the difference. When clean and
corrupted give the same output there is no difference to restore and no effect to normalise: that pair is
refused with a sentence (pick another corrupted input or another output).

Choices (docs/ARCHITECTURE.md, "Causal views"):
- **Inputs** (`make_pair`): (a) "episode": episode A at step t vs episode B at step t' (default t' = t);
  (b) "rtg": the same window with every return-to-go token shifted by `rtg_shift` (raw return units);
  (c) "key" (Key-to-Door): an episode that picked up the key vs one that did not, at the same step (default the
  first phase-3 step, the same in every episode of the shipped data).
- **The window** is what the agent computes while acting at the step: its receptive field
  (`analysis.core.inputs.receptive_field`: n_layer * K steps for a native banded DT, whose deeper layers read keys
  that saw further back; K for HF imports), or `context` steps when given (e.g. K, the training window). Left
  padding is dropped: a padded token is masked as a key and changes no real token, so a window of the real steps
  alone gives the same outputs. Clean and corrupted windows must hold the same number of real steps (then every
  token position means the same thing in both): the same step, or steps past the window's length in both;
  anything else is refused with a sentence saying what fits.
- **Residual rows**: `blocks.{i}.resid_pre` of every block (row 0 is the embedding as block 0 reads it) and the
  last block's `resid_post` (what the final layer norm reads). resid_pre of block i+1 is resid_post of block i,
  so these n_layer + 1 points are every state of the residual stream once.
- **Positions**: every real token up to the output's token: s_t for the action and value (the last a_t comes
  after it and never reaches them), a_t for the predicted return.
- **Heads and MLPs**: `blocks.{i}.attn.head_out[..., k, :]` (head k's part of the attention output, all
  positions) and `blocks.{i}.mlp.out` (all positions).
- **Outputs** (`readout`): "action": the logit or the probability of one action (discrete; default the logged
  action at the clean step) or one dimension of the tanh output (continuous); "value": `head.value` with every
  return-to-go hidden (rtg_known=False, as the value head was trained and as analysis/interp/attribution.py reads it);
  "return": `head.return`, R_{t+1}, from the a_t token. Value and return are in raw return units.
- **Cells left out** are exactly the corrupted output, so they are filled in without a forward (`computed` is
  False there): a patch whose clean and corrupted activations are equal bit for bit, a token whose step lies
  beyond the band's reach of the output (block i's stream at step p reaches step t through n_layer - i banded
  attention layers, each at most K - 1 steps back), and in the last resid_post every token but the output's own
  (the final layer norm and the heads act per token).
- **Only what a patch changes** (`Patcher.positions` on a plain DT, `DecisionTransformer.run_suffix`): patching
  `blocks.{i}.resid_pre` at position p leaves blocks 0..i-1 and every token before p as in the corrupted run
  (causal attention), so a patched cell runs blocks i..n_layer-1 only, from the corrupted run's residual stream,
  against its cached keys / values (ln_1 and c_attn of its resid_pre; the patched token's clean ones at block i).
  At block j only the positions both changed by the patch (within j - i + 1 bands of p) and read by the output
  (within n_layer - 1 - j bands of it; the last block: the output token alone) are queries; the previous block's
  positions before them are keys only; tokens the patch cannot have reached enter from the corrupted stream.
  Positions of one row at most `SUFFIX_SPAN` apart share a batch (each copy runs the union of their ranges; cut at
  `TOKEN_BUDGET` tokens). Exact: every query sees the keys it sees in the full forward, with their patched values.
  Subclasses with their own forward take the previous path: per residual row one batch of copies of the corrupted
  window over the `reach_steps` steps it reaches the output from (`Patcher.patched(steps=...)`). Heads and MLPs
  (all positions patched at once): every layer's in one batch of full forwards, cut at `TOKEN_BUDGET` tokens
  (smaller batches stay in cache: on a 2-core CPU a 60-step window costs ~13 us per token at batch 1 and ~16 at
  batch 180, so batching alone buys little; the gain is the work left out). Actions and values use
  `last_state_only=True` (the last block for the s_t token alone). `Patcher.positions_naive` is the twin: one plain
  forward per cell (bench/patching_speed.py; equal results within 1e-5). Measured on cartpole-dt (60-step window,
  716 cells, 319 run): 31 suffix batches, 0.12 s against 3.5-3.9 s for the twin, 28-32x (2-core machine at load
  average 4-5.7; the previous per-row batches of whole windows: 13 forwards, ~0.5 s, 4-6x).

Direct logit attribution and the logit lens are in analysis/interp/dla.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from models.base import inference

from analysis.interp.attribution_markers import is_key_to_door, key_door_steps
from analysis.core.cache import report
from analysis.core.inputs import receptive_field, step_windows, training_data

OUTPUTS = ("action", "value", "return")
CORRUPTIONS = ("episode", "rtg", "key")
METRICS = ("logit", "prob")
_SHORT = ("R", "s", "a")
TOKEN_BUDGET = 4_096     # tokens per batched forward: small enough to stay in cache (faster per token than larger batches)
SUFFIX_SPAN = 12         # positions one suffix batch spans (`Patcher.positions`): wider batches run fewer forwards but
                         # feed every copy the union of their suffixes


# ---- what is measured -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Readout:
    """One scalar output of a DT at the window's last step."""

    output: str          # "action" | "value" | "return"
    index: int           # action index (discrete) or action dimension (continuous); 0 for value / return
    metric: str          # "logit" | "prob" (discrete action); "action" (continuous); "value" | "return"
    discrete: bool
    scale: float         # value / return: rtg_scale (raw return units); 1 for actions

    @property
    def rtg_known(self) -> bool:
        return self.output != "value"

    @property
    def label(self) -> str:
        if self.output == "action":
            if not self.discrete:
                return f"action dimension {self.index}"
            return f"{'logit' if self.metric == 'logit' else 'probability'} of action {self.index}"
        return "value (return-to-go hidden)" if self.output == "value" else "predicted return R(t+1)"

    def read(self, out) -> torch.Tensor:
        """[B] from a DTOutput (full or last_state_only)."""
        if self.output == "action":
            a = out.action_preds[:, -1].float()
            if self.metric == "prob":
                a = a.softmax(-1)
            return a[:, self.index]
        pred = out.value_preds if self.output == "value" else out.return_preds
        return pred[:, -1, 0].float() * self.scale


def check_dt(agent, what: str) -> None:
    if not agent.has("step_tokens"):
        raise ValueError(f"{what} needs a Decision Transformer; this agent is a {getattr(agent, 'kind', type(agent).__name__)}.")


def readout(agent, output: str = "action", action: int | None = None, metric: str = "logit",
            default_action: int = 0) -> Readout:
    """Check `output` against what the agent has (capabilities, action range) -> a Readout."""
    if output not in OUTPUTS:
        raise ValueError(f"unknown output '{output}'; choose one of {', '.join(OUTPUTS)}.")
    if not agent.has(output):
        has = [o for o in OUTPUTS if agent.has(o)]
        raise ValueError(f"this agent ({agent.kind}) has no {output} head; outputs it has: {', '.join(has) or 'none'}.")
    check_dt(agent, "this causal view")
    if output != "action":
        return Readout(output, 0, output, bool(agent.discrete), float(agent.config.rtg_scale))
    if agent.discrete:
        if metric not in METRICS:
            raise ValueError(f"unknown metric '{metric}' for a discrete action; choose logit or prob.")
        n = int(agent.config.n_actions)
        idx = default_action if action is None else action
        if not 0 <= int(idx) < n:
            raise ValueError(f"action {idx} is out of range: this agent has {n} actions (0..{n - 1}).")
        return Readout("action", int(idx), metric, True, 1.0)
    n = int(agent.act_dim)
    idx = 0 if action is None else action
    if not 0 <= int(idx) < n:
        raise ValueError(f"action dimension {idx} is out of range: this agent's actions have {n} dimensions (0..{n - 1}).")
    return Readout("action", int(idx), "action", False, 1.0)


def uses_last_state(agent, out: Readout) -> bool:
    """Action and value read the last s_t token: compute only what it needs (DT.run_with_cache last_state_only),
    where the agent computes partial forwards."""
    return out.output in ("action", "value") and agent.has("partial_forward")


def uses_suffix(agent) -> bool:
    """The position grid may run only the blocks and tokens a patch changes (DecisionTransformer.run_suffix): an agent
    that computes partial forwards (others take the batched path)."""
    return agent.has("partial_forward")


def run(agent, inputs: dict, out: Readout, names=(), interventions=None, last_state: bool | None = None):
    """(outputs, cache) of one forward on `inputs` as `out` needs it (rtg hidden for the value; last_state_only
    where it applies, unless `last_state` says otherwise)."""
    kw = {**inputs, "rtg_known": out.rtg_known}
    last_state = uses_last_state(agent, out) if last_state is None else last_state
    with inference(agent):
        if last_state:
            return agent.run_with_cache(kw, list(names), interventions, last_state_only=True)
        return agent.run_with_cache(kw, list(names), interventions)


# ---- clean and corrupted inputs ---------------------------------------------------------------------
def token_labels(n_steps: int) -> list[str]:
    """R, s, a of each step, oldest first: "R t-3", "s t", "a t-1" (as analysis/interp/attention.py)."""
    return [f"{_SHORT[k]} t-{b}" if b else f"{_SHORT[k]} t" for b in range(n_steps - 1, -1, -1) for k in range(3)]


def window_steps(agent, context: int | None = None) -> int:
    """Steps of the window the action at a step is computed from: the receptive field, or `context`."""
    if context is None:
        return receptive_field(agent)
    if int(context) < 1:
        raise ValueError(f"context must be at least 1 step, got {context}.")
    return int(context)


def check_step(dataset, episode, step, what: str = "episode") -> tuple[int, int]:
    """(episode, step) as ints, or a sentence saying which fit."""
    E = dataset.n_episodes
    episode = int(episode)
    if not 0 <= episode < E:
        raise ValueError(f"{what} {episode} is out of range: the dataset has {E} episodes (0..{E - 1}).")
    n = int(dataset.episode_lengths[episode])
    step = n // 2 if step is None else int(step)
    if not 0 <= step < n:
        raise ValueError(f"step {step} is out of range: {what} {episode} has {n} steps (0..{n - 1}).")
    return episode, step


def window(agent, data, episode: int, step: int, context: int | None = None, rtg_shift: float = 0.0):
    """forward() kwargs [1, L, ...] of the real steps of the window ending at `step` (L = min(window, step + 1))."""
    L = min(window_steps(agent, context), step + 1)
    return step_windows(agent, data, np.array([int(data.starts[episode]) + step]), context=L, rtg_shift=rtg_shift), L


@dataclass
class PatchPair:
    """A clean and a corrupted window of the same length and alignment (no padding)."""

    clean: dict
    corrupted: dict
    steps: int                   # real steps in each window
    clean_at: tuple[int, int]    # (episode, step)
    corrupted_at: tuple[int, int]
    corruption: str              # "episode" | "rtg" | "key"
    rtg_shift: float             # raw return units ("rtg"; 0 otherwise)
    logged_action: object        # the clean step's logged action (int for discrete)
    description: str

    @property
    def labels(self) -> list[str]:
        return token_labels(self.steps)


def key_door_pair(dataset, episode: int | None = None, corrupt_episode: int | None = None,
                  step: int | None = None) -> tuple[int, int, int]:
    """(clean, corrupted, step) for Key-to-Door: a clean episode that picked up the key (default: the first that
    also reached the door) and a corrupted one that did not (default: the first whose first phase-3 step is the
    clean one's and which lasts past `step`); `step` defaults to the clean episode's first phase-3 step."""
    if not is_key_to_door(dataset):
        raise ValueError("corrupt='key' needs a Key-to-Door dataset (key pickup is read from its observations); "
                         "use corrupt='episode' or corrupt='rtg'.")
    E = dataset.n_episodes

    def marks(e):
        s, t = int(dataset.episode_starts[e]), int(dataset.episode_ends[e])
        return key_door_steps(dataset.observations[s:t], np.asarray(dataset.actions)[s:t])

    def first_with_key() -> int | None:
        returns, first = dataset.episode_returns, None
        for e in range(E):
            m = marks(e)
            if m.has_key and m.phase3_step is not None:
                if returns[e] > 0:
                    return e
                first = e if first is None else first
        return first

    if episode is None:
        episode = first_with_key()
        if episode is None:
            raise ValueError("no episode of this dataset picked up the key and reached phase 3; corrupt='key' needs one.")
    else:
        episode = check_step(dataset, episode, 0)[0]
        if not marks(episode).has_key:
            other = first_with_key()
            hint = f" (e.g. episode {other})" if other is not None else ""
            raise ValueError(f"episode {episode} did not pick up the key; corrupt='key' needs a clean episode that did{hint}.")
    kd = marks(episode)
    if step is None:
        if kd.phase3_step is None:
            raise ValueError(f"episode {episode} never reached phase 3; give a step (0..{dataset.episode_lengths[episode] - 1}).")
        step = kd.phase3_step
    episode, step = check_step(dataset, episode, step)
    if corrupt_episode is None:
        lengths = dataset.episode_lengths
        for e in range(E):
            m = marks(e)
            if not m.has_key and lengths[e] > step and m.phase3_step == kd.phase3_step:
                return episode, e, step
        raise ValueError(f"no episode without the key reaches step {step} in phase 3 as episode {episode} does; "
                         "give corrupt_episode and step.")
    corrupt_episode = check_step(dataset, corrupt_episode, step, "corrupt_episode")[0]
    if marks(corrupt_episode).has_key:
        raise ValueError(f"episode {corrupt_episode} picked up the key; corrupt='key' needs a corrupted episode that did not.")
    return episode, corrupt_episode, step


def default_rtg_shift(dataset, episode: int, step: int) -> float:
    """Ask for nothing more (shift by -R_t); where R_t is already 0, ask for the dataset's best episode return."""
    R = float(dataset.returns_to_go[int(dataset.episode_starts[episode]) + step])
    return -R if R != 0 else float(np.max(dataset.episode_returns))


def make_pair(agent, dataset, episode: int | None = None, step: int | None = None, corrupt: str = "episode",
              corrupt_episode: int | None = None, corrupt_step: int | None = None, rtg_shift: float | None = None,
              context: int | None = None, data=None) -> PatchPair:
    """The clean and corrupted windows (see the module docstring). episode/step: the clean input (defaults: episode
    0, its middle step; for "key" the key_door_pair defaults). corrupt="episode": corrupt_episode (default the next
    episode that lasts past the step) at corrupt_step (default `step`); "rtg": the clean window with rtg_shift
    (raw return units; default `default_rtg_shift`); "key": key_door_pair."""
    check_dt(agent, "activation patching")
    if corrupt not in CORRUPTIONS:
        raise ValueError(f"unknown corruption '{corrupt}'; choose one of {', '.join(CORRUPTIONS)}.")
    data = data if data is not None else training_data(agent, dataset)
    shift = 0.0
    if corrupt == "key":
        episode, corrupt_episode, step = key_door_pair(dataset, episode, corrupt_episode, step)
        corrupt_step = step if corrupt_step is None else corrupt_step
    else:
        episode, step = check_step(dataset, 0 if episode is None else episode, step)
    if corrupt == "rtg":
        shift = default_rtg_shift(dataset, episode, step) if rtg_shift is None else float(rtg_shift)
        if shift == 0:
            raise ValueError("rtg_shift 0 leaves the input unchanged; give a non-zero shift (raw return units).")
        corrupt_episode, corrupt_step = episode, step
    elif corrupt == "episode":
        corrupt_step = step if corrupt_step is None else int(corrupt_step)
        if corrupt_episode is None:
            E, lengths = dataset.n_episodes, dataset.episode_lengths
            fits = [e for e in (np.arange(1, E) + episode) % E if lengths[e] > corrupt_step]
            if not fits:
                raise ValueError(f"no other episode lasts past step {corrupt_step}; give a smaller step.")
            corrupt_episode = int(fits[0])
    corrupt_episode, corrupt_step = check_step(dataset, corrupt_episode, corrupt_step, "corrupt_episode")
    clean, L = window(agent, data, episode, step, context)
    corrupted, L2 = window(agent, data, corrupt_episode, corrupt_step, context, rtg_shift=shift)
    if L != L2:
        W = window_steps(agent, context)
        raise ValueError(f"the clean window (episode {episode}, step {step}) has {L} real steps and the corrupted one "
                         f"(episode {corrupt_episode}, step {corrupt_step}) has {L2}; patching needs windows of the same "
                         f"length: use corrupt_step={step}, or steps of at least {W - 1} in both (full {W}-step windows).")
    logged = np.asarray(dataset.actions)[int(dataset.episode_starts[episode]) + step]
    logged = int(logged) if agent.discrete else np.asarray(logged, np.float32)
    if corrupt == "rtg":
        desc = f"episode {episode}, step {step}: return-to-go as logged vs shifted by {shift:+.4g}"
    else:
        what = " (key taken vs not)" if corrupt == "key" else ""
        desc = f"clean episode {episode} step {step} vs corrupted episode {corrupt_episode} step {corrupt_step}{what}"
    return PatchPair(clean, corrupted, L, (episode, step), (corrupt_episode, corrupt_step), corrupt, shift, logged, desc)


# ---- results -----------------------------------------------------------------------------------------
@dataclass
class PatchGrid:
    """One patching map: the output with each cell's activation patched from clean into corrupted."""

    kind: str                    # "positions" (rows: residual points, columns: tokens) | "heads" (rows: layers,
                                 # columns: heads, then the MLP)
    rows: list[str]              # activation names (positions) or "layer i" (heads)
    row_labels: list[str]
    columns: list[str]           # token labels or "head k" / "MLP"
    patched: np.ndarray          # [rows, columns] the output with that patch (raw units of the readout)
    computed: np.ndarray         # [rows, columns] bool: run (False: provably the corrupted output; see the module)
    clean: float
    corrupted: float
    readout: Readout
    description: str
    clean_at: tuple[int, int]
    corrupted_at: tuple[int, int]
    forwards: int = 0            # forward passes the grid took (clean and corrupted not counted)
    steps_back: np.ndarray = field(default_factory=lambda: np.zeros(0, int))   # positions: per column

    @property
    def effect(self) -> np.ndarray:
        """(patched - corrupted) / (clean - corrupted)."""
        return (self.patched - self.corrupted) / (self.clean - self.corrupted)

    def to_frame(self) -> pd.DataFrame:
        R, C = self.patched.shape
        r, c = np.meshgrid(np.arange(R), np.arange(C), indexing="ij")
        frame = pd.DataFrame({"row": np.asarray(self.rows)[r.ravel()], "label": np.asarray(self.row_labels)[r.ravel()],
                              "column": np.asarray(self.columns)[c.ravel()], "patched": self.patched.ravel(),
                              "effect": self.effect.ravel(), "computed": self.computed.ravel()})
        if self.kind == "positions":
            frame.insert(3, "position", c.ravel())
            frame.insert(4, "steps_back", self.steps_back[c.ravel()])
        frame["clean"], frame["corrupted"], frame["output"] = self.clean, self.corrupted, self.readout.label
        return frame


class Patcher:
    """A clean/corrupted pair run once (outputs and every patchable activation), ready for patched forwards."""

    def __init__(self, agent, pair: PatchPair, out: Readout):
        self.agent, self.pair, self.out = agent, pair, out
        n = agent.n_layer
        self.resid_names = [f"blocks.{i}.resid_pre" for i in range(n)] + [f"blocks.{n - 1}.resid_post"]
        self.names = self.resid_names + ["blocks.*.attn.head_out", "blocks.*.mlp.out"]
        L = pair.steps
        self.last_state = uses_last_state(agent, out)
        self.output_token = 3 * (L - 1) + (2 if out.output == "return" else 1)
        self._kvs: dict = {}     # (clean | corrupted, block) -> that run's keys / values (`_kv`)
        mask = pair.corrupted.get("attention_mask")   # real tokens by position (None: all; pairs drop left padding)
        self._valid = None if mask is None or bool(mask.all()) else mask.bool().repeat_interleave(3, dim=1)
        o_clean, self.clean_cache = run(agent, pair.clean, out, self.names)
        o_corr, self.corrupted_cache = run(agent, pair.corrupted, out, self.names)
        self.clean, self.corrupted = float(out.read(o_clean)[0]), float(out.read(o_corr)[0])
        gap = abs(self.clean - self.corrupted)
        if not gap > 1e-6 * max(1.0, abs(self.clean), abs(self.corrupted)):
            raise ValueError(f"the clean and corrupted inputs give the same {out.label}, {self.clean:.6g}, so there is "
                             "no difference to restore and no effect to normalise; "
                             + ("the value head hides every return-to-go, so an rtg shift cannot change it: choose "
                                "corrupt='episode' (or 'key') or another output." if pair.corruption == "rtg" and out.output == "value"
                                else "choose another corrupted input (another episode, a larger rtg_shift) or another output."))

    def tokens(self, steps: int, last_state: bool | None = None) -> int:
        """Tokens a forward over `steps` steps computes (last_state_only stops at the last s_t)."""
        return 3 * steps - 1 if (self.last_state if last_state is None else last_state) else 3 * steps

    # ---- one batch of patched forwards ----
    def patched(self, masks: dict[str, torch.Tensor], steps: int | None = None) -> np.ndarray:
        """The output of B copies of the corrupted window, row b with activation `name` replaced by its clean
        value where masks[name][b] is True. masks[name]: [B, tokens] (residual, mlp.out) or [B, tokens, heads]
        (attn.head_out) over the tokens the full window's forward computes; masks and cached activations are
        aligned at their last token (the output's), so a tensor holding only the last few tokens (the last
        block's under last_state_only, or a shorter window) reads their last columns.

        steps < the window: run only the window's last `steps` steps, with one name patched, whose activation is
        then replaced entirely (clean where masked, the full window's corrupted value elsewhere): what comes before
        it in this shorter window is never read, and the result is exact when every path from that activation to
        the output stays inside these steps (`reach_steps`)."""
        B = next(iter(masks.values())).shape[0]
        L = self.pair.steps
        steps = L if steps is None else int(steps)
        if steps < L and len(masks) != 1:
            raise ValueError("a shorter window patches one activation name at a time.")
        inputs = {k: v[:, L - steps:] for k, v in self.pair.corrupted.items()}
        inputs = {k: v.expand(B, *v.shape[1:]) for k, v in inputs.items()}

        def patch(name, mask):
            clean, corr = self.clean_cache[name], self.corrupted_cache[name]

            def fn(x):
                T = x.shape[1]
                m = mask[:, mask.shape[1] - T:][..., None]
                return torch.where(m, clean[:, clean.shape[1] - T:], corr[:, corr.shape[1] - T:] if steps < L else x)
            return fn

        out, _ = run(self.agent, inputs, self.out, (), {name: patch(name, m) for name, m in masks.items()})
        return self.out.read(out).numpy().astype(np.float64)

    def _batched(self, cells: list[tuple[str, tuple]], token_budget: int, shape: dict[str, tuple],
                 steps: int | None = None, done: int = 0, total: int | None = None) -> tuple[np.ndarray, int]:
        """cells: (name, index into that name's mask without the batch dim) -> outputs [n], forwards."""
        rows = max(1, int(token_budget) // max(self.tokens(steps or self.pair.steps), 1))
        values, forwards = np.empty(len(cells)), 0
        total = total or len(cells)
        for start in range(0, len(cells), rows):
            part = cells[start:start + rows]
            masks = {}
            for b, (name, index) in enumerate(part):
                if name not in masks:
                    masks[name] = torch.zeros((len(part),) + shape[name], dtype=torch.bool)
                masks[name][(b,) + index] = True
            values[start:start + len(part)] = self.patched(masks, steps)
            forwards += 1
            report((done + start + len(part)) / total, f"patched {done + start + len(part)} of {total}")
        return values, forwards

    # ---- the layer x position grid ----
    def reach_steps(self, row: int) -> int:
        """Steps of the window that residual row `row` reaches the output from: through n_layer - row banded
        attention layers of K - 1 steps back each ((n_layer - row) * (K - 1) + 1 steps); the last resid_post only
        from the output's own step; all of the window for unbanded (HF-import) attention."""
        L, n = self.pair.steps, self.agent.n_layer
        band = getattr(self.agent, "band", None)
        if row == n:
            return 1
        return L if band is None else min(L, (n - row) * (int(band) - 1) + 1)

    def _position_cells(self, row: int) -> list[int]:
        """Positions of residual row `row` worth a forward: the clean and corrupted activations differ there, and
        it reaches the output (within `reach_steps`; the last resid_post: the output token alone)."""
        name, o = self.resid_names[row], self.output_token
        c, k = self.clean_cache[name][0], self.corrupted_cache[name][0]
        T = self.tokens(self.pair.steps)
        differs = np.zeros(T, bool)
        differs[T - c.shape[0]:] = (c != k).any(-1).numpy()
        differs = differs[:o + 1]
        cols = np.arange(o + 1)
        reach = (cols == o) if row == len(self.resid_names) - 1 else (o // 3 - cols // 3 < self.reach_steps(row))
        return [int(p) for p in np.flatnonzero(differs & reach)]

    def _grid(self, kind, rows, row_labels, columns, patched, computed, forwards, steps_back=None) -> PatchGrid:
        p = self.pair
        return PatchGrid(kind, rows, row_labels, columns, patched, computed, self.clean, self.corrupted, self.out,
                         p.description, p.clean_at, p.corrupted_at, forwards,
                         steps_back if steps_back is not None else np.zeros(len(columns), int))

    def _position_grid(self, patched, computed, forwards) -> PatchGrid:
        n = self.agent.n_layer
        labels = [f"into layer {i + 1}" if i else "embedding (into layer 1)" for i in range(n)] + [f"after layer {n}"]
        cols = self.pair.labels[:self.output_token + 1]
        steps_back = np.repeat(np.arange(self.pair.steps - 1, -1, -1), 3)[:self.output_token + 1]
        return self._grid("positions", list(self.resid_names), labels, cols, patched, computed, forwards, steps_back)

    def positions(self, token_budget: int = TOKEN_BUDGET, span: int = SUFFIX_SPAN) -> PatchGrid:
        """Each residual point x each token position, cells that cannot change the output left out. A plain DT:
        per residual row, batches of `span` consecutive positions (at most `token_budget` tokens) run only what
        the patch changes and the output reads (`_suffix_batch`); other agents: per row one batched forward over
        the steps it reaches the output from, positions in the batch."""
        T = self.tokens(self.pair.steps)
        patched = np.full((len(self.resid_names), self.output_token + 1), self.corrupted)
        computed = np.zeros(patched.shape, bool)
        per_row = [self._position_cells(r) for r in range(len(self.resid_names))]
        total, done, forwards = sum(map(len, per_row)), 0, 0
        suffix = uses_suffix(self.agent)
        for r, (name, cols) in enumerate(zip(self.resid_names, per_row)):
            if not cols:
                continue
            if suffix:
                values, f = self._suffix_row(r, cols, token_budget, span, done, total)
            else:
                values, f = self._batched([(name, (p,)) for p in cols], token_budget, {name: (T,)},
                                          self.reach_steps(r), done, total)
            patched[r, cols], computed[r, cols] = values, True
            done, forwards = done + len(cols), forwards + f
        return self._position_grid(patched, computed, forwards)

    # ---- the suffix path: start at the patched block, run only the tokens the patch changes and the output reads
    def _at(self, cache: dict, name: str, start: int, stop: int) -> torch.Tensor:
        """cache[name] at token positions start..stop-1 (cached activations are aligned at the output token)."""
        x = cache[name]
        off = self.output_token + 1 - x.shape[1]
        return x[:, start - off:stop - off]

    def _kv(self, which: str, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Block j's keys and values [1, heads, T, hd] in the clean or corrupted run (ln_1 and c_attn of its
        resid_pre), computed once."""
        key = (which, j)
        if key not in self._kvs:
            x = (self.clean_cache if which == "clean" else self.corrupted_cache)[f"blocks.{j}.resid_pre"]
            with inference(self.agent):
                self._kvs[key] = self.agent.keys_values(j, x)
        return self._kvs[key]

    def _first_seen(self, q: int) -> int:
        """The first token position a query at position q attends to (banded: K - 1 steps back)."""
        band = self.agent.band
        return 0 if band is None else 3 * max(0, q // 3 - (int(band) - 1))

    def _spans(self, i: int, pa: int, pb: int) -> list[tuple[int, int]]:
        """For patches of blocks.{i}.resid_pre at positions pa..pb: per block j = i..n_layer-1 the first and last
        position whose block-j output is both changed by some patch (causal, and within (j - i + 1) bands of pb)
        and read by the output (within n_layer - 1 - j bands of it; the last block: the output token alone)."""
        n, o, band = self.agent.n_layer, self.output_token, self.agent.band
        spans = []
        for j in range(i, n):
            if j == n - 1:
                spans.append((o, o))
            elif band is None:
                spans.append((pa, o))
            else:
                K1 = int(band) - 1
                lo = 3 * max(0, o // 3 - (n - 1 - j) * K1)
                spans.append((max(pa, lo), min(o, 3 * (pb // 3 + (j - i + 1) * K1) + 2)))
        return spans

    def _suffix_tokens(self, i: int, pa: int, pb: int) -> int:
        """Tokens one copy feeds through the blocks (queries and keys-only) for patches at pa..pb of row i."""
        spans = self._spans(i, pa, pb)
        return sum(e - s + 1 for s, e in spans) + sum(max(0, s1 - s0) for (s0, _), (s1, _) in zip(spans, spans[1:]))

    def _suffix_batch(self, i: int, ps: list[int]) -> np.ndarray:
        """Outputs with blocks.{i}.resid_pre (i = n_layer: the last resid_post) patched at each position of `ps`
        (ascending), one copy each, exactly as the full forward gives them: blocks 0..i-1 are the corrupted run's;
        block j >= i runs only the positions of its span (`_spans`) as queries, and as keys-only the previous
        span's positions before its own, against the corrupted run's keys / values elsewhere (with the patched
        token's clean keys / values at block i); tokens after the previous span enter from the corrupted
        residual stream (the patches cannot reach them)."""
        agent, n, o = self.agent, self.agent.n_layer, self.output_token
        clean, corr = self.clean_cache, self.corrupted_cache
        valid = self._valid
        if i == n:   # the final layer norm and the heads act per token: the output token's clean stream
            with inference(agent):
                out = agent.run_suffix(n, self._at(clean, self.resid_names[n], o, o + 1), [o])
            return self.out.read(out).numpy().astype(np.float64)
        B, P = len(ps), torch.as_tensor(ps)
        spans = self._spans(i, ps[0], ps[-1])
        name = f"blocks.{i}.resid_pre"
        s0, e0 = spans[0]
        x = self._at(corr, name, s0, e0 + 1).expand(B, -1, -1).clone()
        rows = torch.nonzero(P >= s0)[:, 0]
        x[rows, P[rows] - s0] = self._at(clean, name, 0, o + 1)[0, P[rows]]
        past, extend, first = [None], [None], [None]
        seen = self._first_seen(s0)
        if seen < s0:   # the patched token before the span is a key: its clean keys / values
            k, v = (z[:, :, seen:s0].expand(B, -1, -1, -1).clone() for z in self._kv("corrupted", i))
            rows = torch.nonzero(P < s0)[:, 0]
            if len(rows):
                assert int(P[rows].min()) >= seen, "a patch before the first key seen (cells out of reach)"
                ck, cv = self._kv("clean", i)
                k[rows, :, P[rows] - seen] = ck[0].transpose(0, 1)[P[rows]]     # [rows, heads, hd]
                v[rows, :, P[rows] - seen] = cv[0].transpose(0, 1)[P[rows]]
            past[0] = (k, v, torch.arange(seen, s0))
        for j in range(i + 1, n):
            (s_prev, e_prev), (s, e) = spans[j - 1 - i], spans[j - i]
            seen = self._first_seen(s)
            # corrupted keys: before the previous span, and between it and this span (the patches reach neither)
            k_pos = torch.cat([torch.arange(seen, max(seen, s_prev)), torch.arange(e_prev + 1, max(e_prev + 1, s))])
            k, v = self._kv("corrupted", j)
            past.append((k[:, :, k_pos], v[:, :, k_pos], k_pos) if len(k_pos) else None)
            a = max(e_prev + 1, s)
            extend.append((self._at(corr, f"blocks.{j}.resid_pre", a, e + 1), torch.arange(a, e + 1))
                          if a <= e else None)
            first.append(s)
        with inference(agent):
            out = agent.run_suffix(i, x, torch.arange(s0, e0 + 1), past, extend, first, valid)
        return self.out.read(out).numpy().astype(np.float64)

    def _suffix_row(self, row: int, cols: list[int], token_budget: int, span: int, done: int = 0,
                    total: int | None = None) -> tuple[np.ndarray, int]:
        """Residual row `row` at positions `cols` (ascending) by `_suffix_batch`: batches of positions at most
        `span` apart and at most `token_budget` tokens -> outputs [len(cols)], forwards."""
        batches, part = [], []
        for p in cols:
            if part and (p - part[0] >= span
                         or (len(part) + 1) * self._suffix_tokens(min(row, self.agent.n_layer - 1), part[0], p) > token_budget):
                batches.append(part)
                part = []
            part.append(p)
        batches.append(part)
        values, at, total = np.empty(len(cols)), 0, total or len(cols)
        for part in batches:
            values[at:at + len(part)] = self._suffix_batch(row, part)
            at += len(part)
            report((done + at) / total, f"patched {done + at} of {total}")
        return values, len(batches)

    def positions_naive(self) -> PatchGrid:
        """The twin: for every (row, position), one plain run_with_cache (the full forward over the whole window)
        with one intervention (bench/patching_speed.py, tests)."""
        agent, out = self.agent, self.out
        _, clean = run(agent, self.pair.clean, out, self.resid_names, last_state=False)
        inputs = self.pair.corrupted
        patched = np.empty((len(self.resid_names), self.output_token + 1))
        for r, name in enumerate(self.resid_names):
            for p in range(self.output_token + 1):
                def fn(x, p=p, src=clean[name]):
                    x = x.clone()
                    x[:, p] = src[:, p]
                    return x
                o, _ = run(agent, inputs, out, (), {name: fn}, last_state=False)
                patched[r, p] = float(out.read(o)[0])
        return self._position_grid(patched, np.ones(patched.shape, bool), patched.size)

    # ---- the layer x head (+ MLP) grid ----
    def heads(self, token_budget: int = TOKEN_BUDGET) -> PatchGrid:
        """Each head's output (all positions) and each MLP's output, every layer, batched together."""
        n, h = self.agent.n_layer, self.agent.n_head
        T = self.tokens(self.pair.steps)
        cells, where = [], []
        for i in range(n):
            name = f"blocks.{i}.attn.head_out"
            c, k = self.clean_cache[name][0], self.corrupted_cache[name][0]
            for j in range(h):
                if not torch.equal(c[:, j], k[:, j]):
                    cells.append((name, (slice(None), j)))
                    where.append((i, j))
            name = f"blocks.{i}.mlp.out"
            if not torch.equal(self.clean_cache[name], self.corrupted_cache[name]):
                cells.append((name, (slice(None),)))
                where.append((i, h))
        shape = {f"blocks.{i}.attn.head_out": (T, h) for i in range(n)}
        shape.update({f"blocks.{i}.mlp.out": (T,) for i in range(n)})
        patched = np.full((n, h + 1), self.corrupted)
        computed = np.zeros(patched.shape, bool)
        forwards = 0
        if cells:
            values, forwards = self._batched(cells, token_budget, shape)
            for (r, c), v in zip(where, values):
                patched[r, c], computed[r, c] = v, True
        return self._grid("heads", [f"layer {i + 1}" for i in range(n)], [f"layer {i + 1}" for i in range(n)],
                          [f"head {j}" for j in range(h)] + ["MLP"], patched, computed, forwards)


def patcher(agent, pair: PatchPair, output: str = "action", action: int | None = None, metric: str = "logit") -> Patcher:
    """A Patcher for `output` (see `readout`; the discrete action defaults to the clean step's logged action)."""
    default = int(pair.logged_action) if getattr(agent, "discrete", False) else 0
    return Patcher(agent, pair, readout(agent, output, action, metric, default))


def patch_positions(agent, pair: PatchPair, output: str = "action", action: int | None = None, metric: str = "logit",
                    token_budget: int = TOKEN_BUDGET) -> PatchGrid:
    """The residual stream of every layer at every token position, patched from clean into corrupted."""
    return patcher(agent, pair, output, action, metric).positions(token_budget)


def patch_heads(agent, pair: PatchPair, output: str = "action", action: int | None = None, metric: str = "logit",
                token_budget: int = TOKEN_BUDGET) -> PatchGrid:
    """Every head's output and every MLP's output, patched from clean into corrupted."""
    return patcher(agent, pair, output, action, metric).heads(token_budget)
