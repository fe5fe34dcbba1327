"""Compare mode: one catalog figure for two agents on the same dataset, episode and step, side by side on shared
axes, with their difference (B − A) where a difference means something.

`compare(name, agent_a, agent_b, dataset, label_a, label_b, **params)` makes the figure for each agent through
catalog.make (or a caller's cached `make`) and returns ONE Figured: the two figures as panels of one figure (every
axis of B matched to A's, heatmaps on one colour scale), then a third panel with B − A where the figure's `Spec`
asks for it and the two results align; figures whose spec is "overlay" draw B's traces on A's axes instead (the
return sweep, predicted vs real: one real trace, both predictions). The data is both frames with an `agent` column
(the labels) and, with a difference, rows with agent = "B − A". B is made with A's resolved parameters (the same
targets, step, start), except those that name the agent (`Spec.own_params`).

`randomized_agent(agent, seed)` is the agent with every weight re-initialised (analysis.interp.attribution.randomized_copy,
the model the attribution pages' Adebayo baseline uses), config identical, stamped with its own content key; one per
(agent content, seed), a shared object of the one cache (the 8 most recent kept).

How a figure is compared is declared once: `catalog.register(..., compare=Spec(...))` (or "difference", "overlay",
"side"), else the table SPECS below, else side by side. Figures without an agent cannot be compared.
"""
from __future__ import annotations

import base64
import copy
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.publish import catalog
from analysis.publish.catalog import Figured
from analysis.publish.figures.style import DIVERGING, PALETTE
from analysis.publish.figures.text import plain

DIFF = "B − A"
RANDOMIZED = "randomized"          # what `--compare` and `?compare=` say for the randomized copy
B_COLOUR = PALETTE[4]              # overlay: the second agent's traces (reddish purple)


class CompareError(ValueError):
    """A second agent that cannot be compared here: one sentence that says what fits."""


@dataclass(frozen=True)
class Spec:
    """How a figure is compared. mode: "difference" (A | B | B − A), "side" (A | B) or "overlay" (B's traces on A's
    axes). keys: float columns of the data that index rows (a shift, a target) rather than values to subtract.
    own_params: parameters that name the agent (each agent gets its own label)."""

    mode: str = "side"
    keys: tuple = ()
    own_params: tuple = ()


SPECS = {
    "attention_map": Spec("difference"),
    "attention_token_types": Spec("difference"),
    "attention_steps_back": Spec("difference"),
    "attention_rollout": Spec("difference"),
    "attention_episode": Spec("difference"),
    "tt_attention": Spec("difference"),
    "tt_attention_dims": Spec("difference"),
    "attribution_timesteps": Spec("difference", keys=("reward",)),
    "attribution_features": Spec("difference"),
    "predicted_vs_real": Spec("overlay"),
    "rtg_sweep_returns": Spec("overlay"),
    "rtg_sweep_actions": Spec("side"),
    "rtg_sweep_attention": Spec("difference", keys=("target_return",)),
    "rtg_shift_replay": Spec("side"),
    "prediction_error_compare": Spec("side", own_params=("label",)),
    # Circuits (issue 14): maps and parts on the same grid for two agents of one architecture
    "patching_positions": Spec("difference"),
    "patching_heads": Spec("difference"),
    "direct_logit_attribution": Spec("difference"),
}


def spec(name: str) -> Spec:
    entry = catalog.figures().get(name)
    own = getattr(entry, "compare", None)
    if isinstance(own, str):
        own = Spec(own)
    return own or SPECS.get(name, Spec())


def supports(name: str) -> bool:
    """Can this figure be compared (does it draw an agent)?"""
    entry = catalog.figures().get(name)
    return bool(entry and entry.needs_agent)


# ---- the second agent -----------------------------------------------------------------------------------
RANDOMIZED_KEPT = 8   # randomized copies kept (shared objects of the one cache)


def randomized_agent(agent, seed: int = 0):
    """`agent` with every weight re-initialised (seeded; analysis.interp.attribution.randomized_copy), its config, notes and
    recorded input choices identical, stamped with its own content key. One per (agent content, seed), a shared
    object of the one cache (analysis.core.cache.shared)."""
    from analysis.core.cache import shared
    from analysis.core.identity import agent_key

    return shared("randomized_agent", (agent_key(agent), int(seed)), lambda: _randomize(agent, int(seed)),
                  RANDOMIZED_KEPT)


def _randomize(agent, seed: int):
    from analysis.interp.attribution import randomized_copy
    from analysis.core.identity import agent_key, stamp_agent

    copy_ = randomized_copy(agent, seed)
    if copy_.config is not agent.config:
        copy_.__dict__["config"] = agent.config
    for attr in ("notes", "input_choices"):   # what Home's choices and the loader recorded (models.env_choice)
        if attr in getattr(agent, "__dict__", {}):
            copy_.__dict__[attr] = copy.copy(agent.__dict__[attr])
    copy_.__dict__["randomized_from"] = {"agent": agent_key(agent), "seed": seed}
    return stamp_agent(copy_)


def check_pair(agent_a, agent_b, dataset, label_a: str = "A", label_b: str = "B") -> None:
    """The second agent must read the dataset the first one reads: else one sentence saying what fits."""
    from models.errors import AgentError
    from models.checks import check_dataset

    try:
        check_dataset(agent_b, dataset)
    except AgentError as e:
        raise CompareError(f"{label_b} cannot be compared with {label_a} on {dataset.source}: {e} {fits_sentence(dataset)}") \
            from None


def fits_sentence(dataset) -> str:
    """What a second agent must read to be compared on this dataset."""
    acts = (f"{dataset.n_actions} discrete actions" if dataset.discrete else f"{dataset.act_dim}-d continuous actions")
    return (f"Compare with an agent that reads {dataset.obs_dim} observation features and {acts} "
            f"(or with the randomized copy, `{RANDOMIZED}`).")


# ---- the comparison ---------------------------------------------------------------------------------------
def compare(name: str, agent_a, agent_b, dataset, label_a: str = "A", label_b: str = "B", make=None, **params) -> Figured:
    """Figure `name` for agent A and agent B on `dataset` (same parameters), as one Figured (module docstring).
    make(name, agent, dataset, **params) -> Figured makes each one (default catalog.make; pages pass their cache).
    A figure B cannot make (another kind, fewer heads) raises CompareError with the reason."""
    import inspect

    from models.errors import AgentError

    entries = catalog.figures()
    if name not in entries:
        raise KeyError(f"unknown figure '{name}'; known figures: {', '.join(entries)}.")
    if not entries[name].needs_agent:
        raise CompareError(f"figure '{name}' draws the dataset alone, so there is no second agent to compare; compare "
                           "mode applies to the figures of an agent (e.g. attention_map, rtg_sweep_returns).")
    make = make or catalog.make
    check_pair(agent_a, agent_b, dataset, label_a, label_b)
    s = spec(name)
    fa = make(name, agent_a, dataset, **params)
    accepted = set(inspect.signature(entries[name].make).parameters) - {"agent", "dataset"}
    pb = dict(params)
    for k, v in fa.params.items():   # A's resolved defaults (targets, step, start): both on the same inputs
        if k in accepted and pb.get(k) is None:
            pb[k] = v
    for k in s.own_params:
        if k in accepted:
            pb[k] = label_b
    try:
        fb = make(name, agent_b, dataset, **pb)
    except (ValueError, IndexError, KeyError, AgentError) as e:
        raise CompareError(f"{label_b} cannot draw {name} beside {label_a}: {str(e).rstrip('.')}.") from None
    diff = difference_frame(fa.data, fb.data, s.keys) if s.mode == "difference" else None
    if s.mode == "overlay" and _same_axes(fa.figure, fb.figure):
        fig = overlay(fa.figure, fb.figure, label_a, label_b)
    else:
        fig, n_diff = _side_by_side(fa.figure, fb.figure, label_a, label_b, with_difference=diff is not None)
        if not n_diff:   # no trace pair to subtract: no difference at all
            diff = None
    frames = [fa.data.assign(agent=label_a), fb.data.assign(agent=label_b)]
    if diff is not None:
        frames.append(diff.assign(agent=DIFF))
    data = pd.concat(frames, ignore_index=True)
    data = data[["agent"] + [c for c in data.columns if c != "agent"]]
    return Figured(name, fig, data, {**fa.params, "compare": label_b})


def difference_frame(a: pd.DataFrame, b: pd.DataFrame, keys=()) -> pd.DataFrame | None:
    """B − A on the numeric value columns (floats, less `keys`) where the two frames index the same rows (the other
    columns equal row by row, or as unique keys); None where they do not align."""
    if list(a.columns) != list(b.columns) or len(a) != len(b) or len(a) == 0:
        return None
    values = [c for c in a.columns if pd.api.types.is_float_dtype(a[c]) and pd.api.types.is_float_dtype(b[c])
              and c not in keys]
    index = [c for c in a.columns if c not in values]
    if not values:
        return None
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    if not index or a[index].equals(b[index]):
        out = a.copy()
        out[values] = b[values].to_numpy(np.float64) - a[values].to_numpy(np.float64)
        return out
    if a[index].duplicated().any() or b[index].duplicated().any():
        return None
    merged = a.merge(b, on=index, how="outer", suffixes=("", "__b"), indicator=True)
    if (merged["_merge"] != "both").any():
        return None
    out = merged[index].copy()
    for c in values:
        out[c] = merged[f"{c}__b"].to_numpy(np.float64) - merged[c].to_numpy(np.float64)
    return out[list(a.columns)]


# ---- figures: panels side by side, or one on the other ------------------------------------------------------
_AXIS_KEY = re.compile(r"^([xy])axis(\d*)$")
_AXIS_REF = re.compile(r"^([xy])(\d*)( domain)?$")
_COLORAXIS = re.compile(r"^coloraxis(\d*)$")


def _num(s: str) -> int:
    return int(s) if s else 1


def _ref(letter: str, n: int) -> str:
    return letter if n == 1 else f"{letter}{n}"


def _key(letter: str, n: int) -> str:
    return f"{letter}axis" if n == 1 else f"{letter}axis{n}"


def _json(fig: go.Figure) -> dict:
    """The figure as plain data: plotly's typed arrays ({dtype, bdata, shape}) decoded to numpy arrays."""
    return _decode(fig.to_plotly_json())


def _decode(obj):
    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj:
            a = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=obj["dtype"])
            shape = obj.get("shape")
            return a.reshape([int(x) for x in str(shape).split(",")]) if shape else a
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_decode(v) for v in obj]
    return obj


def _axes(j: dict) -> dict[str, list[int]]:
    """The x and y axis numbers a figure (plotly JSON) uses, from its layout and its traces."""
    out = {"x": {1}, "y": {1}}
    for k in j["layout"]:
        m = _AXIS_KEY.match(k)
        if m:
            out[m.group(1)].add(_num(m.group(2)))
    for t in j["data"]:
        for letter in "xy":
            m = _AXIS_REF.match(t.get(f"{letter}axis", letter) or letter)
            if m:
                out[letter].add(_num(m.group(2)))
    return {k: sorted(v) for k, v in out.items()}


def _same_axes(a: go.Figure, b: go.Figure) -> bool:
    ja, jb = _json(a), _json(b)
    return _axes(ja) == _axes(jb) and all(_compatible(ja, jb, letter, n) for letter in "xy" for n in _axes(ja)[letter])


def _title(axis: dict) -> str | None:
    t = axis.get("title")
    return (t.get("text") if isinstance(t, dict) else t) or None


def _axis_num(t: dict, letter: str) -> int:
    m = _AXIS_REF.match(t.get(f"{letter}axis", letter) or letter)
    return _num(m.group(2)) if m else 1


def _traces_on(j: dict, letter: str, n: int) -> list[dict]:
    return [t for t in j["data"] if _axis_num(t, letter) == n]


def _numeric(v) -> bool:
    return np.asarray(v).dtype.kind in "biuf"


def _categories(traces: list[dict], letter: str) -> list | None:
    """The category labels the traces put on this axis, or None when every coordinate is a number."""
    cats = []
    for t in traces:
        v = t.get(letter)
        if v is None or _numeric(v):
            continue
        arr = np.asarray(v, dtype=object).ravel()
        if any(isinstance(x, str) for x in arr):
            cats.extend(str(x) for x in arr)
    return list(dict.fromkeys(cats)) if cats else None


def _compatible(ja: dict, jb: dict, letter: str, n: int) -> bool:
    """May B's axis (letter, n) share A's: the same title and, for category axes, the same categories."""
    la, lb = ja["layout"].get(_key(letter, n), {}), jb["layout"].get(_key(letter, n), {})
    ta, tb = _title(la), _title(lb)
    if ta and tb and ta != tb:
        return False
    return _categories(_traces_on(ja, letter, n), letter) == _categories(_traces_on(jb, letter, n), letter)


def _root(layout: dict, letter: str, n: int) -> int:
    """The axis that `matches` chains from (letter, n) end at."""
    seen = {n}
    while True:
        m = _AXIS_REF.match(str(layout.get(_key(letter, n), {}).get("matches", "")))
        if not m or _num(m.group(2)) in seen:
            return n
        n = _num(m.group(2))
        seen.add(n)


def _finite(values) -> np.ndarray:
    try:
        a = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        return np.empty(0)
    return a[np.isfinite(a)]


def _union_range(r1, r2):
    """The union of two axis ranges, keeping the first one's direction (reversed axes stay reversed)."""
    if r1 is None or r2 is None:
        return r1 if r2 is None else r2
    try:
        lo, hi = min(min(r1), min(r2)), max(max(r1), max(r2))
    except TypeError:
        return r1
    return [hi, lo] if r1[0] > r1[1] else [lo, hi]


class _Panel:
    """One figure's traces, axes and layout items moved into a column of the combined figure."""

    def __init__(self, j: dict, offset: dict[str, int], column: tuple[float, float]):
        self.j, self.offset, self.column = j, offset, column

    def axis(self, letter: str, n: int) -> int:
        return n + self.offset[letter]

    def ref(self, value: str) -> str:
        m = _AXIS_REF.match(str(value))
        if not m:
            return value
        letter = m.group(1)
        return _ref(letter, self.axis(letter, _num(m.group(2)))) + (m.group(3) or "")

    def x(self, v: float) -> float:
        c0, c1 = self.column
        return c0 + float(v) * (c1 - c0)

    def trace(self, t: dict) -> dict:
        t = copy.deepcopy(t)
        t["xaxis"] = self.ref(t.get("xaxis", "x") or "x")
        t["yaxis"] = self.ref(t.get("yaxis", "y") or "y")
        return t

    def layout_axes(self) -> dict:
        out = {}
        axes = _axes(self.j)
        for letter in "xy":
            for n in axes[letter]:
                a = copy.deepcopy(self.j["layout"].get(_key(letter, n), {}))
                for k in ("anchor", "matches", "overlaying", "scaleanchor"):
                    if k in a and _AXIS_REF.match(str(a[k])):
                        a[k] = self.ref(a[k])
                if letter == "x":   # columns split the width; rows keep their heights
                    d0, d1 = a.get("domain", [0.0, 1.0])
                    a["domain"] = [min(max(self.x(d0), 0.0), 1.0), min(max(self.x(d1), 0.0), 1.0)]
                    if "position" in a:
                        a["position"] = self.x(a["position"])
                if "anchor" not in a:   # plotly's default (the first axis of the other letter), in this panel
                    other = "y" if letter == "x" else "x"
                    a["anchor"] = _ref(other, self.axis(other, 1))
                out[_key(letter, self.axis(letter, n))] = a
        return out

    def item(self, item: dict, shape: bool = False) -> dict:
        """An annotation or shape: axis references renamed, paper x moved into the column."""
        item = copy.deepcopy(item)
        for letter in "xy":
            ref = item.get(f"{letter}ref", letter if shape else "paper")   # plotly's defaults
            if ref == "paper":
                if letter == "x":
                    for k in ("x", "x0", "x1"):
                        if k in item and isinstance(item[k], (int, float)):
                            item[k] = self.x(item[k])
                item[f"{letter}ref"] = "paper"
            else:
                item[f"{letter}ref"] = self.ref(ref)
        return item


def _columns(n: int, gap: float) -> list[tuple[float, float]]:
    w = (1.0 - (n - 1) * gap) / n
    return [(round(k * (w + gap), 6), min(round(k * (w + gap) + w, 6), 1.0)) for k in range(n)]


def _has_scale(j: dict) -> bool:
    return any(t.get("type") in ("heatmap", "contour", "histogram2d") or "coloraxis" in t for t in j["data"]) \
        or any(_COLORAXIS.match(k) for k in j["layout"])


def _value_key(t: dict) -> str | None:
    """Which coordinate of a trace holds its values (what a difference subtracts)."""
    if t.get("type") in ("heatmap", "contour"):
        return "z"
    if t.get("type") in ("bar", "scatter", "scattergl") and t.get("fill") in (None, "none"):   # bands: no
        return "x" if t.get("orientation") == "h" else "y"
    return None


def _same(u, v) -> bool:
    """Equal coordinates (NaN equal to NaN)."""
    if u is None or v is None:
        return u is None and v is None
    if _numeric(u) and _numeric(v):
        return np.array_equal(np.asarray(u, float), np.asarray(v, float), equal_nan=True)
    a, b = np.asarray(u, dtype=object), np.asarray(v, dtype=object)
    return a.shape == b.shape and all(x == y or (x != x and y != y) for x, y in zip(a.ravel(), b.ravel()))


def _difference_trace(ta: dict, tb: dict) -> dict | None:
    """B − A of one trace pair drawn like A's trace; None where the two do not align."""
    vk = _value_key(ta)
    if vk is None or ta.get("type") != tb.get("type") or ta.get("xaxis") != tb.get("xaxis") or ta.get("yaxis") != tb.get("yaxis"):
        return None
    for k in ("x", "y") if vk == "z" else ({"x", "y"} - {vk}):
        if not _same(ta.get(k), tb.get(k)):
            return None
    try:
        va, vb = np.asarray(ta.get(vk), dtype=float), np.asarray(tb.get(vk), dtype=float)
    except (TypeError, ValueError):
        return None
    if va.shape != vb.shape or va.size == 0:
        return None
    t = {k: copy.deepcopy(v) for k, v in ta.items()
         if k not in ("customdata", "text", "hovertext", "hovertemplate", "texttemplate", "colorscale", "colorbar", "zmin",
                      "zmax", "zmid", "zauto", "coloraxis", "showscale", "reversescale", "marker", "error_y", "error_x")}
    t[vk] = vb - va
    t["showlegend"] = False
    if vk == "z":
        t["hovertemplate"] = "%{x}, %{y}: B − A = %{z:.4g}<extra></extra>"
    else:
        t["hovertemplate"] = ("%{y}" if vk == "x" else "%{x}") + f": B − A = %{{{vk}:.4g}}<extra>{ta.get('name') or ''}</extra>"
        if t.get("type") == "bar":
            t["marker"] = {"color": "#777"}
        else:
            t["marker"] = {k: v for k, v in (ta.get("marker") or {}).items() if k in ("color", "symbol", "size")}
    return t


def side_by_side(fig_a: go.Figure, fig_b: go.Figure, label_a: str = "A", label_b: str = "B",
                 with_difference: bool = False) -> go.Figure:
    """A's figure and B's as two panels of one figure: every axis of B matched to A's (where they show the same
    thing), heatmaps on one colour scale (A's colour bar, beside B); with_difference adds a third panel with B − A of
    every trace pair that aligns (a diverging scale centred on 0; none if no pair aligns)."""
    return _side_by_side(fig_a, fig_b, label_a, label_b, with_difference)[0]


def _side_by_side(fig_a, fig_b, label_a, label_b, with_difference) -> tuple[go.Figure, int]:
    ja, jb = _json(fig_a), _json(fig_b)
    ax_a, ax_b = _axes(ja), _axes(jb)
    same = ax_a == ax_b
    diffs = []
    if with_difference and same and len(ja["data"]) == len(jb["data"]):
        diffs = [_difference_trace(ta, tb) for ta, tb in zip(ja["data"], jb["data"])]
    n_diff = sum(d is not None for d in diffs)
    n = 3 if n_diff else 2
    scale = _has_scale(ja) or _has_scale(jb)
    cols = _columns(n, 0.09 if scale else 0.05)
    pa = _Panel(ja, {"x": 0, "y": 0}, cols[0])
    pb = _Panel(jb, {"x": max(ax_a["x"]), "y": max(ax_a["y"])}, cols[1])
    pd_ = _Panel(ja, {"x": pb.offset["x"] + max(ax_b["x"]), "y": pb.offset["y"] + max(ax_b["y"])}, cols[-1])

    layout = copy.deepcopy(ja["layout"])
    for k in list(layout):
        if _AXIS_KEY.match(k):
            del layout[k]
    layout.update(pa.layout_axes())
    axes_b = pb.layout_axes()
    # B's axes share A's where they show the same thing: matched ranges (zoom together), one explicit range
    for letter in "xy":
        for n_b in ax_b[letter]:
            b = axes_b[_key(letter, pb.axis(letter, n_b))]
            if same and _compatible(ja, jb, letter, n_b):
                a = layout[_key(letter, _root(ja["layout"], letter, n_b))]
                a["range"] = _union_range(a.get("range"), b.pop("range", None))
                if a["range"] is None:
                    a.pop("range")
                b["matches"] = _ref(letter, _root(ja["layout"], letter, n_b))
                if letter == "y":
                    b.pop("title", None)
                    if _categories(_traces_on(ja, letter, n_b), "y"):   # the same labels as A's, beside them
                        b["showticklabels"] = False
    layout.update(axes_b)

    data = [pa.trace(t) for t in ja["data"]]
    data_b = [pb.trace(t) for t in jb["data"]]
    shown = {(t.get("name"), t.get("type")) for t in ja["data"] if t.get("showlegend", True) is not False and t.get("name")}
    for ta, tb in zip(data, data_b):   # a pair toggles together in the legend
        if ta.get("name") and ta.get("name") == tb.get("name"):
            group = ta.get("legendgroup") or f"{ta['name']}"
            ta["legendgroup"] = tb["legendgroup"] = group
    for tb in data_b:
        if (tb.get("name"), tb.get("type")) in shown:
            tb["showlegend"] = False
    _share_colour_scales(layout, data, data_b, jb["layout"], x=cols[1][1] + 0.01)
    data += data_b
    for t in data:   # plotly lists every trace once there are several: only named ones belong in the legend
        if not t.get("name"):
            t["showlegend"] = False

    captions = {i.get("text") for i in ja["layout"].get("annotations", []) if _below(i)}
    items = {"annotations": [pa.item(i) for i in ja["layout"].get("annotations", [])]
             + [pb.item(i) for i in jb["layout"].get("annotations", []) if not (_below(i) and i.get("text") in captions)],
             "shapes": [pa.item(i, shape=True) for i in ja["layout"].get("shapes", [])]
             + [pb.item(i, shape=True) for i in jb["layout"].get("shapes", [])]}
    if n_diff:
        axes_d = pd_.layout_axes()
        for letter in "xy":
            for n_d in ax_a[letter]:
                d = axes_d[_key(letter, pd_.axis(letter, n_d))]
                on = _traces_on(ja, letter, n_d)
                d.pop("range", None)
                if not any(_value_key(t) == letter for t in on):   # coordinates (steps, tokens), not values: A's
                    d["matches"] = _ref(letter, _root(ja["layout"], letter, n_d))
                    if letter == "y" and _categories(on, "y"):
                        d["showticklabels"] = False
                if letter == "y":
                    d.pop("title", None)
        layout.update(axes_d)
        dtraces = [pd_.trace(t) for t in diffs if t is not None]
        z = np.concatenate([_finite(t["z"]) for t in dtraces if "z" in t] or [np.empty(0)])
        if z.size or any("z" in t for t in dtraces):
            m = float(np.abs(z).max()) if z.size and np.abs(z).max() > 0 else 1.0
            name = f"coloraxis{1 + max([_num(_COLORAXIS.match(k).group(1)) for k in layout if _COLORAXIS.match(k)] or [1])}"
            layout[name] = {"colorscale": DIVERGING, "cmin": -m, "cmax": m, "cmid": 0.0,
                            "colorbar": {"title": {"text": DIFF, "side": "right"}, "thickness": 14, "x": 1.01,
                                         "xanchor": "left"}}
            for t in dtraces:
                if "z" in t:
                    t["coloraxis"] = name
        for t in dtraces:
            if "z" in t:
                continue
            line = {"type": "line", "line": {"color": "#999", "width": 1}}   # zero: what "no difference" looks like
            if t.get("orientation") == "h":
                line.update(xref=t["xaxis"], x0=0, x1=0, yref=f"{t['yaxis']} domain", y0=0, y1=1)
            else:
                line.update(xref=f"{t['xaxis']} domain", x0=0, x1=1, yref=t["yaxis"], y0=0, y1=0)
            items["shapes"].append(line)
        data += dtraces
    # column headers above everything the panels put over their plot area (their own column titles)
    lifts = [float(i.get("yshift") or 0) + 18 for i in items["annotations"]
             if i.get("yref") in ("paper",) + tuple(f"{r} domain" for r in _all_y(layout))
             and isinstance(i.get("y"), (int, float)) and i["y"] >= 0.99]
    lift = int(max(lifts, default=0)) + 6
    for label, (c0, c1) in zip([label_a, label_b, DIFF if n_diff else None], cols):
        if label:
            items["annotations"].append({"text": f"<b>{plain(label)}</b>", "x": (c0 + c1) / 2, "xref": "paper", "y": 1.0,
                                         "yref": "paper", "yanchor": "bottom", "xanchor": "center", "showarrow": False,
                                         "yshift": lift, "font": {"size": 14}})
    layout.update(items)
    margin = dict(layout.get("margin") or {})
    margin["t"] = int(margin.get("t", 60)) + lift + 34   # the headers' row, under the figure's title
    margin["r"] = max(int(margin.get("r", 30)), 90 if scale else 30)
    layout["margin"] = margin
    _legend_below(layout, data)
    layout["width"] = int(min(2600, (ja["layout"].get("width") or 900) * (0.8 * n)))
    return go.Figure(data=data, layout=layout), n_diff


def _below(item: dict) -> bool:
    """A caption under the plot (paper coordinates below 0)."""
    return item.get("yref", "paper") == "paper" and isinstance(item.get("y"), (int, float)) and item["y"] < 0


def _all_y(layout: dict) -> list[str]:
    return [_ref("y", _num(m.group(2))) for k in layout if (m := _AXIS_KEY.match(k)) and m.group(1) == "y"]


def _legend_below(layout: dict, data: list) -> None:
    """The legend in one row under the figure (a combined figure has no free corner for it)."""
    if not any(t.get("name") and t.get("showlegend", True) is not False for t in data):
        return
    layout["legend"] = {**(layout.get("legend") or {}), "orientation": "h", "x": 0.0, "xanchor": "left", "y": 0.0,
                        "yref": "container", "yanchor": "bottom"}
    margin = dict(layout.get("margin") or {})
    margin["b"] = int(margin.get("b", 60)) + 40
    layout["margin"] = margin


def _share_colour_scales(layout: dict, data_a: list, data_b: list, layout_b: dict, x: float) -> None:
    """One colour scale per heatmap pair (the union of both ranges, A's colour bar placed beside B's panel), and B's
    colour axes folded into A's."""
    for ta, tb in zip(data_a, data_b):
        if "z" not in ta or "z" not in tb or "coloraxis" in ta:
            continue
        za, zb = _finite(ta["z"]), _finite(tb["z"])
        lo = min([v for v in (ta.get("zmin"), tb.get("zmin")) if v is not None] + ([za.min()] if za.size else [])
                 + ([zb.min()] if zb.size else []) or [0.0])
        hi = max([v for v in (ta.get("zmax"), tb.get("zmax")) if v is not None] + ([za.max()] if za.size else [])
                 + ([zb.max()] if zb.size else []) or [1.0])
        if ta.get("zmin") is not None and ta.get("zmax") is not None and ta["zmin"] == -ta["zmax"]:
            lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
        for t in (ta, tb):
            t["zmin"], t["zmax"], t["zauto"] = float(lo), float(hi), False
        tb["showscale"] = False
        ta.setdefault("colorbar", {}).update({"x": x, "xanchor": "left"})
    for k, ca in list(layout.items()):
        if not _COLORAXIS.match(k):
            continue
        cb = layout_b.get(k, {})
        for lo_k, hi_k in (("cmin", "cmax"),):
            if ca.get(lo_k) is not None and cb.get(lo_k) is not None:
                symmetric = ca[lo_k] == -ca[hi_k]
                lo, hi = min(ca[lo_k], cb[lo_k]), max(ca[hi_k], cb[hi_k])
                if symmetric:
                    lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
                ca[lo_k], ca[hi_k] = lo, hi
        ca.setdefault("colorbar", {}).update({"x": x, "xanchor": "left"})


def _recolour(obj, colour: str):
    """Every colour of a trace (line, marker, fill) in `colour`, keeping each one's transparency."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in ("color", "fillcolor") and isinstance(v, str):
                alpha = re.match(r"rgba\([^,]+,[^,]+,[^,]+,\s*([\d.]+)\)", v)
                r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
                out[k] = f"rgba({r},{g},{b},{alpha.group(1)})" if alpha else colour
            else:
                out[k] = _recolour(v, colour)
        return out
    return obj


def overlay(fig_a: go.Figure, fig_b: go.Figure, label_a: str = "A", label_b: str = "B") -> go.Figure:
    """B's traces on A's axes (same axis layout): B in one colour, its lines dotted; traces both draw alike (the
    logged episode, the diagonal) once; each axis's explicit range widened to cover both."""
    ja, jb = _json(fig_a), _json(fig_b)
    layout = copy.deepcopy(ja["layout"])
    for k, b in jb["layout"].items():
        if _AXIS_KEY.match(k) and k in layout and b.get("range") is not None and layout[k].get("range") is not None:
            layout[k]["range"] = _union_range(layout[k]["range"], b["range"])
    where = lambda t: (t.get("name"), t.get("xaxis"), t.get("yaxis"))   # noqa: E731
    b_by = {where(t): t for t in jb["data"] if t.get("name")}
    data, merged = [], set()
    for t in ja["data"]:
        t = copy.deepcopy(t)
        tb = b_by.get(where(t))
        if tb is not None and _same(t.get("x"), tb.get("x")) and _same(t.get("y"), tb.get("y")):
            merged.add(id(tb))            # drawn alike by both: once
        elif tb is not None and _diagonal(t) and _diagonal(tb):
            lo = min(_finite(t["x"]).min(), _finite(tb["x"]).min())
            hi = max(_finite(t["x"]).max(), _finite(tb["x"]).max())
            t["x"], t["y"] = [lo, hi], [lo, hi]
            merged.add(id(tb))            # a reference line: once, over both ranges
        elif t.get("name"):
            t["name"] = f"{plain(label_a)} · {t['name']}"
            t["legendgroup"] = f"A {t.get('legendgroup') or t['name']}"
        data.append(t)
    for t in jb["data"]:
        if id(t) in merged:
            continue
        t = _recolour(copy.deepcopy(t), B_COLOUR)
        if t.get("type", "scatter") == "scatter" and "lines" in (t.get("mode") or "lines") and t.get("fill") in (None, "none"):
            t.setdefault("line", {})["dash"] = "dot"
        if t.get("name"):
            t["name"] = f"{plain(label_b)} · {t['name']}"
            t["legendgroup"] = f"B {t.get('legendgroup') or t['name']}"
        data.append(t)
    layout["legend"] = {**(layout.get("legend") or {}), "orientation": "v", "x": 1.02, "xanchor": "left", "y": 1.0,
                        "yanchor": "top", "yref": "paper"}   # beside the plot: twice the entries of A's own
    layout["width"] = int(max(layout.get("width") or 900, 900) + 250)
    return go.Figure(data=data, layout=layout)


def _diagonal(t: dict) -> bool:
    x, y = _finite(t.get("x")), _finite(t.get("y"))
    return len(x) == 2 and len(y) == 2 and np.array_equal(x, y)
