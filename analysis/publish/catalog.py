"""Every exportable figure by name: `cli.py export --figure NAME`, the pages' bundles and the report share it.

An entry is a function (agent, dataset, **params) -> Figured: it runs its analysis and draws its figure,
and carries the data behind the figure (CSV export) and the parameters that remake it (bundle manifest).
The entries live in analysis/publish/entries/ (one module per topic; the analysis modules themselves only compute and
return results) and register with `@register`; `figures()` imports them all.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd
import plotly.graph_objects as go

# the entries package (analysis/publish/entries/, one module per topic), each imported once, on first use
MODULES = [f"analysis.publish.entries.{topic}" for topic in (
    "dataset", "attention", "sweeps", "predictions", "embeddings", "context", "attribution", "compounding", "causal",
    "ablation", "video", "spatial", "values")]


@dataclass
class Figured:
    """A figure with the data behind it and what made it."""

    name: str
    figure: go.Figure
    data: pd.DataFrame
    params: dict = field(default_factory=dict)
    video: object = None      # an animated figure's analysis.media.video.EpisodeClip (written as gif / mp4); None: a still
    uses_dataset: bool = True  # False: computed from the agent in its environment only (its manifest names no dataset)


@dataclass
class Entry:
    name: str
    description: str
    needs_agent: bool
    make: Callable[..., Figured]
    compare: object = None   # how compare mode pairs two agents' figures: analysis.publish.compare_mode.Spec or its mode name
    formats: tuple = ()      # the only formats it is written in (episode_video: gif, mp4); (): a still figure's
    rolls_out: bool = False  # with no dataset it rolls the agent out in its environment (the CLI passes none)
    error: type = ValueError  # what a parameter out of its range raises (ParamError, or the entry's own ValueError)


_REGISTRY: dict[str, Entry] = {}


def register(name: str, description: str, needs_agent: bool = True, compare=None, formats: tuple = (),
             rolls_out: bool = False, error: type | None = None):
    """Decorator: make(agent, dataset, **params) -> Figured. Params need defaults (the CLI passes none).
    compare: "difference" (A | B | B − A), "side" (A | B) or "overlay" (B on A's axes), or an analysis.publish.compare_mode.Spec;
    None: analysis.publish.compare_mode's table, else side by side. formats: an animation's own formats (gif, mp4), the only ones
    it is written in. rolls_out: dataset None means a rollout of the agent in its environment. error: the ValueError
    subclass a parameter outside its range (RANGES below) raises; default ParamError."""
    def wrap(fn):
        _REGISTRY[name] = Entry(name, description, needs_agent, fn, compare, tuple(formats), rolls_out,
                                error or ParamError)
        return fn
    return wrap


def figures() -> dict[str, Entry]:
    for mod in MODULES:
        importlib.import_module(mod)
    return dict(sorted(_REGISTRY.items()))


def make(name: str, agent=None, dataset=None, **params) -> Figured:
    entries = figures()
    if name not in entries:
        raise KeyError(f"unknown figure '{name}'; known figures: {', '.join(entries)}.")
    entry = entries[name]
    if entry.needs_agent and agent is None:
        raise ValueError(f"figure '{name}' needs an agent (--agent).")
    for key, value in params.items():
        _check_finite(key, value)
    check_params(name, agent, dataset, **params)
    return entry.make(agent, dataset, **params)


def _check_finite(key: str, value) -> None:
    """NaN or inf in a parameter (a target return, a shift) is a sentence here, not a traceback later."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"parameter {key} must be a finite number, got {v}.")


# ---- every numeric parameter's range (issue 26, item 9) -----------------------------------------------------------
# Checked in make() before any work, so `cli.py export --param fps=1e-300` is one sentence (exit 2), not ffmpeg's
# `-r 0` and a broken pipe. A bound is a number, or a function of the call (its dataset, agent and the other
# parameters) giving (bound, what it is); None from it: unknown here (no dataset), the static bound applies.

SEED_MAX = 2**32 - 1          # numpy's and gymnasium's seeds
RETURN_MAX = 1e9              # |target return|, |return-to-go shift|: far past any environment's return, float32-safe
MAX_WIDTH = 1920              # an exported video's frame width in pixels
MAX_FPS = 60
MAX_LIST = 256                # targets or shifts in one figure (the Return conditioning page: 256 runs at most)
MAX_SWEEP_RUNS = 256          # targets x episodes of one sweep


class ParamError(ValueError):
    """A figure parameter outside its declared range; str() is one sentence."""


@dataclass(frozen=True)
class Range:
    low: object                   # a number, or fn(call) -> (number | None, why)
    high: object
    whole: bool = True            # a whole number (3.0 counts; 3.5 does not)
    cap: float | None = None      # the bound when a function returns None (no dataset to read it from)
    items: bool = False           # a list of numbers, each in range, 1 to MAX_LIST of them


class _Call:
    """What a bound may read: the dataset, the agent and the call's parameters."""

    def __init__(self, agent, dataset, params):
        self.agent, self.dataset, self.params = agent, dataset, params

    def episodes(self):
        if self.dataset is None:
            return None, ""
        return self.dataset.n_episodes - 1, f"{self.dataset.source} has {self.dataset.n_episodes} episodes"

    def last_step(self, episode_param: str = "episode"):
        """The last step of the episode a sibling parameter names, or of the longest episode."""
        if self.dataset is None:
            return None, ""
        lengths = self.dataset.episode_lengths
        e = self.params.get(episode_param)
        if _whole_number(e) and 0 <= e < len(lengths):
            return int(lengths[int(e)]) - 1, f"episode {int(e)} has {int(lengths[int(e)])} steps"
        return int(max(lengths)) - 1, f"the longest episode has {int(max(lengths))} steps"

    def _size(self, name):
        v = getattr(self.agent, name, None)   # a transformer's agent.n_layer / agent.n_head
        return int(v) if _whole_number(v) and v > 0 else None

    def _attends(self) -> bool:
        """layer / head parameters index attention blocks; an MLP's n_layer counts its hidden layers, so for an agent
        without attention the bound is left to the figure, whose own sentence says what it needs."""
        has = getattr(self.agent, "has", None)
        return bool(has is not None and has("attention"))

    def layers(self, low=False):
        n = self._size("n_layer") if self._attends() else None
        if n is None:
            return None, ""
        return (-n if low else n - 1), f"the agent has {n} layer{'s' * (n != 1)}"

    def heads(self):
        n = self._size("n_head") if self._attends() else None
        return (None, "") if n is None else (n - 1, f"the agent has {n} head{'s' * (n != 1)} per layer")

    def actions(self):
        c = getattr(self.agent, "config", None)
        if c is None:
            return None, ""
        if c.discrete:
            return int(c.n_actions) - 1, f"the agent has {int(c.n_actions)} actions"
        return int(c.act_dim) - 1, f"the agent's actions have {int(c.act_dim)} dimensions"

    def context(self):
        K = getattr(self.agent, "context_length", None)
        return (None, "") if K is None else (int(K), f"the agent's context holds {int(K)} steps")

    def back(self):
        K = getattr(self.agent, "context_length", None)
        return (None, "") if K is None else (max(int(K) - 1, 0), f"the agent's context holds {int(K)} steps")


def _minus_one(bound):
    b, why = bound
    return (None if b is None else b - 1), why


def _ep(attr, *args):
    return lambda call: getattr(call, attr)(*args)


_EPISODE = Range(0, _ep("episodes"), cap=SEED_MAX)
_STEP = Range(0, _ep("last_step"), cap=20_000_000)
_SEED = Range(0, SEED_MAX)
_RETURN = Range(-RETURN_MAX, RETURN_MAX, whole=False)

RANGES: dict[str, Range] = {
    "episode": _EPISODE, "corrupt_episode": _EPISODE,
    "step": _STEP, "start": _STEP,
    "imagine_start": Range(0, lambda call: _minus_one(call.last_step()), cap=20_000_000),   # a step after it to imagine
    "corrupt_step": Range(0, _ep("last_step", "corrupt_episode"), cap=20_000_000),
    "steps": Range(1, 20_000_000),
    "seed": _SEED,
    "width": Range(8, MAX_WIDTH),
    "fps": Range(1, MAX_FPS, whole=False),
    "max_frames": Range(1, 2_000),                      # analysis.media.frames.MAX_FRAMES
    "imagine_horizon": Range(1, 50),                    # analysis.media.player.MAX_IMAGINED_STEPS
    "horizon": Range(1, 50),
    "horizons": Range(1, 100),
    "n_starts": Range(1, 4_096),
    "n_windows": Range(1, 4_096),
    "n_steps": Range(1, 100_000),
    "mlp_steps": Range(0, 100_000),
    "max_points": Range(10, 20_000),                    # analysis.interp.embeddings.MAX_POINTS
    "max_episodes": Range(1, 256),
    "max_steps": Range(1, 2_000),
    "bins": Range(1, 1_000),
    "episodes": Range(1, 64),
    "target_return": _RETURN, "rtg_shift": _RETURN,
    "targets": Range(-RETURN_MAX, RETURN_MAX, whole=False, items=True),
    "shifts": Range(-RETURN_MAX, RETURN_MAX, whole=False, items=True),
    "layer": Range(_ep("layers", True), _ep("layers"), cap=1_000),
    "head": Range(0, _ep("heads"), cap=1_000),
    "action": Range(0, _ep("actions"), cap=65_536),
    "context": Range(1, _ep("context"), cap=100_000),
    "back": Range(0, _ep("back"), cap=100_000),
}
# where a figure means something else by a name: -1 picks a default step or episode, 0 episodes: no environment run
OVERRIDES: dict[tuple[str, str], Range] = {
    ("ablation", "episodes"): Range(0, 64),
    ("attention_episode", "layer"): Range(0, _ep("layers"), cap=1_000),
    ("episode_frames", "stop"): Range(-1, _ep("last_step"), cap=20_000_000),   # -1: the episode's last step
    ("episode_frames", "frames"): Range(1, 16),                                  # figures.dataset.MAX_STRIP pictures
    ("predicted_vs_real", "start"): Range(-1, _ep("last_step"), cap=20_000_000),
    ("tt_patching_heads", "step"): Range(-1, _ep("last_step"), cap=20_000_000),
    ("tt_patching_heads", "corrupted_episode"): Range(-1, _ep("episodes"), cap=SEED_MAX),
    ("tt_patching_heads", "corrupted_step"): Range(-1, _ep("last_step", "corrupted_episode"), cap=20_000_000),
    ("tt_patching_heads", "donor_episode"): Range(-1, _ep("episodes"), cap=SEED_MAX),
    ("tt_patching_heads", "donor_step"): Range(-1, _ep("last_step", "donor_episode"), cap=20_000_000),
}
# parameters that are not numbers (names, choices, switches): checked by their entries
NOT_NUMERIC = {"ablate", "mode", "target", "method", "at", "references", "output", "metric", "corrupt", "colour_by",
               "decoding", "others", "label", "scale", "baseline"}


def param_range(figure: str, param: str) -> Range | None:
    return OVERRIDES.get((figure, param)) or RANGES.get(param)


def check_params(name: str, agent=None, dataset=None, **params) -> None:
    """Every numeric parameter within its declared range (ParamError, one sentence) before any work; None passes where
    the figure's own default is None or NaN (it picks the value)."""
    entry = figures()[name]
    try:
        _check_params(name, entry, agent, dataset, params)
    except ParamError as e:
        raise (e if entry.error is ParamError else entry.error(str(e))) from None


def _check_params(name, entry, agent, dataset, params) -> None:
    import inspect

    defaults = {p.name: p.default for p in inspect.signature(entry.make).parameters.values()}
    call = _Call(agent, dataset, {**{k: v for k, v in defaults.items() if v is not inspect.Parameter.empty}, **params})
    for key, value in params.items():
        r = param_range(name, key)
        if r is None:
            continue
        default = defaults.get(key)
        if value is None and (default is None or (isinstance(default, float) and math.isnan(default))):
            continue
        if r.items:
            if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_LIST:
                n = len(value) if isinstance(value, (list, tuple)) else None
                raise ParamError(f"parameter {key} must be a list of 1 to {MAX_LIST} numbers, got "
                                 f"{'%d of them' % n if n is not None else repr(value)}.")
            for v in value:
                _check_one(key, v, r, call, each=True)
        else:
            _check_one(key, value, r, call)
    if name.startswith("rtg_sweep_"):   # the sweep runs targets x episodes episodes in the environment
        targets, episodes = params.get("targets"), params.get("episodes", defaults.get("episodes"))
        if isinstance(targets, (list, tuple)) and len(targets) * int(episodes) > MAX_SWEEP_RUNS:
            raise ParamError(f"targets x episodes must be at most {MAX_SWEEP_RUNS} runs, got {len(targets)} x "
                             f"{int(episodes)} = {len(targets) * int(episodes)}.")


def _whole_number(v) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and math.isfinite(v) and v == int(v))


def bounds(name: str, param: str, agent=None, dataset=None, **params) -> tuple[float, float, bool]:
    """(lowest, highest, whole) that `param` of figure `name` may take in this call (tests, the pages' widgets)."""
    import inspect

    defaults = {p.name: p.default for p in inspect.signature(figures()[name].make).parameters.values()
                if p.default is not inspect.Parameter.empty}
    r = param_range(name, param)
    lo, hi, _ = _resolve(r, _Call(agent, dataset, {**defaults, **params}))
    return lo, hi, r.whole


def _resolve(r: Range, call: _Call):
    lo, lo_why = r.low(call) if callable(r.low) else (r.low, "")
    hi, hi_why = r.high(call) if callable(r.high) else (r.high, "")
    lo = -r.cap if lo is None else lo     # a bound this call cannot read (no dataset, no agent): the static one
    hi = r.cap if hi is None else hi
    return lo, hi, "; ".join(w for w in dict.fromkeys((lo_why, hi_why)) if w)


def _check_one(key: str, value, r: Range, call: _Call, each: bool = False) -> None:
    lo, hi, why = _resolve(r, call)
    what = f"every value in {key}" if each else f"parameter {key}"
    kind = "a whole number " if r.whole else ""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hi < lo:   # nothing fits (an empty dataset, an episode of one step)
        raise ParamError(f"{what} has no valid value here ({why}), got {value!r}.")
    if not number or not math.isfinite(value) or (r.whole and value != int(value)):
        raise ParamError(f"{what} must be {kind}between {_fmt(lo)} and {_fmt(hi)}"
                         f"{f' ({why})' if why else ''}, got {value!r}.")
    if not lo <= value <= hi:
        if why and not each:   # past what the data or the agent has
            raise ParamError(f"{key} {_fmt(value)} is out of range: {why} ({_fmt(lo)} to {_fmt(hi)}).")
        raise ParamError(f"{what} must be {kind}between {_fmt(lo)} and {_fmt(hi)}, got {value!r}.")


def _fmt(v) -> str:
    return str(int(v)) if float(v) == int(v) and abs(v) < 1e15 else f"{v:g}"
