"""Compare mode's figures (analysis/publish/compare_mode.py makes them): two agents' figures of one kind as panels of
one figure — A, B and, where a difference means something, B − A — or B's traces on A's axes (`overlay`).

The layout, sized for a blog column (COLUMN_WIDTH wide: 1800 px at export's default scale 2):
- A | B side by side when there are two panels, each gets at least MIN_PANEL_PX of plot width, every x-axis title
  fits under its panel and the colour scale (if any) is shared; else one panel per row, top to bottom (A, B, B − A),
  each at the plot height its figure has alone. So no axis title or colour bar meets a neighbour's panel.
- axes ("auto" | "shared" | "independent"): B's axes and colour scales match A's when shared. "auto" shares an axis
  (a colour scale) when each agent's extent on it covers at least FILL of the two extents' union (`fills`): the data,
  or the range the figure fixes, bars from 0. Else the smaller one would be squeezed into a corner (a K=1 window on a
  K=20 step axis, weights up to 0.1 on a 0–0.9 scale) and each keeps its own. Category axes share only the same
  categories, axes with another title never.
- a colour bar stands beside its own panel: right of the x extent, over the y extent of the axes its traces use; a
  shared scale is one bar beside both panels.
- B − A has its own value axis ("B − A <A's axis title>"); heatmaps a diverging scale centred on 0 with their own
  colour bar ("B − A <A's colour bar title>"); bars coloured by sign (SIGN_COLOURS: the ends of the diverging scale)
  with both signs in the legend.
- the title is A's claim and what both subtitles share; what differs (each agent's own values) is written under
  that agent's panel header (`split_titles`).
"""
from __future__ import annotations

import base64
import copy
import re

import numpy as np
import plotly.graph_objects as go

from analysis.publish.figures.style import DIVERGING, PALETTE
from analysis.publish.figures.text import plain

DIFF = "B − A"
_SCALE_NOTE = re.compile(r"\s*\((?:0 to max shown|fixed [^)]*|fit[^)]*|colour capped[^)]*)\)+\s*$")
_CAP_NOTE = re.compile(r"(p\d+) = [-+0-9.e]+")   # labels.Cap's "p99 = 0.28"
B_COLOUR = PALETTE[4]              # overlay: the second agent's traces (reddish purple)
AXES = ("auto", "shared", "independent")
COLUMN_WIDTH = 900                 # layout px: exported at scale 2, 1800 px wide (a blog column at 2x)
FILL = 0.25                        # "auto": share when each extent covers at least this share of the union
MIN_PANEL_PX = 320                 # side by side only when each panel keeps this much plot width
CHAR_PX, SUB_CHAR_PX = 7.5, 6.2    # the template's 14 px font and <sup> text: width per character (an estimate)
BAR_PX = 12                        # a colour bar's distance from its panel
MAX_ROWS_PX = 760                  # three rows (A, B, B − A): their plots shrink to fit (MIN_PLOT_PX each); ~900 px with the title
MIN_PLOT_PX = 160
ROW_GAP_PX = 16                    # between one row's axis title and the next row's header
TITLE_CHAR_PX = 10.0               # the title's 17 px font
SIGN_COLOURS = {"+": "#B2182B", "-": "#2166AC"}   # RdBu's ends: what DIVERGING gives B − A > 0 and B − A < 0

_AXIS_KEY = re.compile(r"^([xy])axis(\d*)$")
_AXIS_REF = re.compile(r"^([xy])(\d*)( domain)?$")
_COLORAXIS = re.compile(r"^coloraxis(\d*)$")
_BR = re.compile(r"<br\s*/?>", re.I)
_TAG = re.compile(r"<[^>]*>")


# ---- plotly JSON --------------------------------------------------------------------------------------------------
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


def same_axes(a: go.Figure, b: go.Figure) -> bool:
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


def _margins(layout: dict) -> dict:
    """The figure's margins: its own, else its template's, else plotly's defaults."""
    own = layout.get("margin") or {}
    tpl = ((layout.get("template") or {}).get("layout") or {}).get("margin") or {}
    return {k: int(own.get(k, tpl.get(k, d))) for k, d in (("l", 80), ("r", 80), ("t", 100), ("b", 80))}


def _visible(text) -> str:
    """What a piece of figure text shows (tags dropped, an entity one character)."""
    return re.sub(r"&#?\w+;", "_", _TAG.sub("", str(text or "")))


# ---- extents and the "auto" rule -------------------------------------------------------------------------------
def fills(ea, eb) -> bool:
    """The "auto" rule: share when each extent (lo, hi) covers at least FILL of their union (an unknown or an empty
    union: share)."""
    if ea is None or eb is None:
        return True
    span = max(ea[1], eb[1]) - min(ea[0], eb[0])
    if not span > 0:
        return True
    return ea[1] - ea[0] >= FILL * span and eb[1] - eb[0] >= FILL * span


def _share(axes: str, ea, eb) -> bool:
    return axes == "shared" or (axes == "auto" and fills(ea, eb))


def _extent(j: dict, letter: str, n: int):
    """What axis (letter, n) shows: the range the figure fixes, else its traces' coordinates (bars from 0, a heatmap
    without coordinates its cell indices); None for a category axis or no numbers."""
    r = j["layout"].get(_key(letter, n), {}).get("range")
    if isinstance(r, (list, tuple)) and len(r) == 2 and all(isinstance(v, (int, float)) for v in r):
        return float(min(r)), float(max(r))
    traces = _traces_on(j, letter, n)
    if _categories(traces, letter):
        return None
    vals = []
    for t in traces:
        v = t.get(letter)
        if v is None:   # plotly's default coordinates: the indices
            z = t.get("z")
            if z is not None:
                shape = np.shape(z)
                count = shape[1] if letter == "x" and len(shape) > 1 else shape[0]
            else:
                count = len(t.get("y" if letter == "x" else "x") or [])
            vals.append(np.arange(count, dtype=float))
            continue
        a = _finite(v)
        if t.get("type") == "bar" and _value_key(t) == letter:
            a = np.append(a, 0.0)   # a bar stands on 0
        vals.append(a)
    allv = np.concatenate(vals) if vals else np.empty(0)
    return (float(allv.min()), float(allv.max())) if allv.size else None


def _values_range(ja: dict, jb: dict, letter: str, n: int, reverse: bool = False) -> list | None:
    """The range a shared value axis (bars, lines: no heatmap) shows: both extents, padded as plotly pads (not
    below a bar's 0)."""
    traces = _traces_on(ja, letter, n) + _traces_on(jb, letter, n)
    if not any(_value_key(t) == letter for t in traces) or any("z" in t for t in traces):
        return None
    ea, eb = (_stacked(j, letter, n) or _extent(j, letter, n) for j in (ja, jb))
    if ea is None or eb is None:
        return None
    lo, hi = min(ea[0], eb[0]), max(ea[1], eb[1])
    pad = 0.05 * (hi - lo) if hi > lo else 0.5
    bars = any(t.get("type") == "bar" for t in traces)
    lo, hi = (lo if bars and lo == 0 else lo - pad), (hi if bars and hi == 0 else hi + pad)
    return [hi, lo] if reverse else [lo, hi]


def _stacked(j: dict, letter: str, n: int):
    """Stacked bars' extent on their value axis (barmode stack / relative): the sums at each place, else None."""
    if j["layout"].get("barmode") not in ("stack", "relative"):
        return None
    pos, neg = {}, {}
    for t in _traces_on(j, letter, n):
        if t.get("type") != "bar" or _value_key(t) != letter:
            continue
        where = t.get("y" if letter == "x" else "x")
        try:
            values = np.nan_to_num(np.asarray(t.get(letter), dtype=float).ravel())
        except (TypeError, ValueError):
            continue
        places = [str(w) for w in (where if where is not None else range(len(values)))]
        for w, v in zip(places, values):
            (pos if v >= 0 else neg)[w] = (pos if v >= 0 else neg).get(w, 0.0) + float(v)
    if not pos and not neg:
        return None
    return min(list(neg.values()) + [0.0]), max(list(pos.values()) + [0.0])


def _z_extent(traces: list[dict], lo=None, hi=None):
    """A colour scale's extent: the bounds the figure fixes, else its traces' values."""
    z = np.concatenate([_finite(t.get("z")) for t in traces] or [np.empty(0)])
    lo = lo if lo is not None else (float(z.min()) if z.size else None)
    hi = hi if hi is not None else (float(z.max()) if z.size else None)
    return None if lo is None or hi is None else (float(lo), float(hi))


# ---- titles -------------------------------------------------------------------------------------------------------
def title_parts(title) -> tuple[list[str], list[str]]:
    """A figure title's claim lines (before the first <sup>) and its subtitle lines (<sup> and title.subtitle)."""
    text = (title.get("text") if isinstance(title, dict) else title) or ""
    i = text.find("<sup>")
    head, tail = (text, "") if i < 0 else (text[:i], text[i:])
    main = [s.strip() for s in _BR.split(head) if s.strip()]
    sub = [s.strip() for s in _BR.split(re.sub(r"</?sup>", "", tail)) if s.strip()]
    own = ((title.get("subtitle") or {}).get("text") if isinstance(title, dict) else None) or ""
    sub += [s.strip() for s in _BR.split(own) if s.strip()]
    return main, sub


def split_titles(title_a, title_b) -> tuple[list[str], list[str], list[str], list[str]]:
    """(claim, shared subtitle lines, A's own, B's own): subtitle lines split at " · " and each piece kept where
    both have it, else under its own agent. A claim B does not share becomes B's first own line."""
    main_a, sub_a = title_parts(title_a)
    main_b, sub_b = title_parts(title_b)
    pieces = lambda lines: [[p.strip() for p in line.split(" · ") if p.strip()] for line in lines]   # noqa: E731
    pa, pb = pieces(sub_a), pieces(sub_b)
    in_a, in_b = {p for line in pa for p in line}, {p for line in pb for p in line}
    keep = lambda lines, where, want: [s for s in (" · ".join(p for p in line if (p in where) == want)   # noqa: E731
                                                   for line in lines) if s]
    own_b = keep(pb, in_a, False)
    if main_b != main_a:
        own_b = main_b + own_b
    return main_a, keep(pa, in_b, True), keep(pa, in_b, False), own_b


def _wrap(text: str, chars: int) -> list[str]:
    """Markup split at spaces (never inside a tag) into lines of at most `chars` visible characters."""
    lines, line = [], ""
    for word in re.split(r" (?![^<]*>)", text):
        if line and len(_visible(line + " " + word)) > chars:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + ([line] if line else [])


def _wrapped(lines: list[str], px: float, char_px: float) -> list[str]:
    chars = max(20, int(px / char_px))
    return [w for line in lines for w in _wrap(line, chars)]


TITLE_TOP_PX, TITLE_LINE_PX = 26, 22   # plotly anchors a multi-line title at its first line's middle; then a line each


def _title_place(lines: int, height: int) -> tuple[dict, int]:
    """Where the title goes (its first line TITLE_TOP_PX from the top) and the top margin its lines need."""
    return (dict(y=1 - TITLE_TOP_PX / height, yref="container", yanchor="top"),
            TITLE_TOP_PX + TITLE_LINE_PX * (lines - 1) + 24)


def _title_text(main: list[str], sub: list[str]) -> str:
    return "<br>".join(main + [f"<sup>{s}</sup>" for s in sub])


# ---- panels -------------------------------------------------------------------------------------------------------
class _Panel:
    """One figure's traces, axes and layout items moved into a box (x0, x1, y0, y1, paper) of the combined figure."""

    def __init__(self, j: dict, offset: dict[str, int], box=(0.0, 1.0, 0.0, 1.0), items: bool = True):
        self.j, self.offset, self.box, self.items = j, offset, box, items   # items: draws the figure's annotations

    def axis(self, letter: str, n: int) -> int:
        return n + self.offset[letter]

    def ref(self, value: str) -> str:
        m = _AXIS_REF.match(str(value))
        if not m:
            return value
        letter = m.group(1)
        return _ref(letter, self.axis(letter, _num(m.group(2)))) + (m.group(3) or "")

    def x(self, v: float) -> float:
        return self.box[0] + float(v) * (self.box[1] - self.box[0])

    def y(self, v: float) -> float:
        return self.box[2] + float(v) * (self.box[3] - self.box[2])

    def trace(self, t: dict) -> dict:
        t = copy.deepcopy(t)
        t["xaxis"] = self.ref(t.get("xaxis", "x") or "x")
        t["yaxis"] = self.ref(t.get("yaxis", "y") or "y")
        return t

    def layout_axes(self) -> dict:
        out = {}
        axes = _axes(self.j)
        for letter in "xy":
            move = self.x if letter == "x" else self.y
            across = self.y if letter == "x" else self.x   # an x axis's free position is a y coordinate
            for n in axes[letter]:
                a = copy.deepcopy(self.j["layout"].get(_key(letter, n), {}))
                for k in ("anchor", "matches", "overlaying", "scaleanchor"):
                    if k in a and _AXIS_REF.match(str(a[k])):
                        a[k] = self.ref(a[k])
                d0, d1 = a.get("domain", [0.0, 1.0])
                a["domain"] = [min(max(move(d0), 0.0), 1.0), min(max(move(d1), 0.0), 1.0)]
                if isinstance(a.get("position"), (int, float)):
                    a["position"] = across(a["position"])
                if "anchor" not in a:   # plotly's default (the first axis of the other letter), in this panel
                    other = "y" if letter == "x" else "x"
                    a["anchor"] = _ref(other, self.axis(other, 1))
                out[_key(letter, self.axis(letter, n))] = a
        return out

    def item(self, item: dict, shape: bool = False) -> dict:
        """An annotation or shape: axis references renamed, paper coordinates moved into the box."""
        item = copy.deepcopy(item)
        for letter in "xy":
            ref = item.get(f"{letter}ref", letter if shape else "paper")   # plotly's defaults
            if ref == "paper":
                move = self.x if letter == "x" else self.y
                for k in (letter, f"{letter}0", f"{letter}1"):
                    if isinstance(item.get(k), (int, float)):
                        item[k] = move(item[k])
                item[f"{letter}ref"] = "paper"
            else:
                item[f"{letter}ref"] = self.ref(ref)
        return item

    def lift(self, plot_px: float) -> float:
        """How far (px) the figure's own items reach above its plot area (subplot titles, labels at the top)."""
        out = 0.0
        for i in self.j["layout"].get("annotations", []) if self.items else []:
            ref, y = i.get("yref", "paper"), i.get("y")
            if not isinstance(y, (int, float)) or y < 0.99 or not (ref == "paper" or str(ref).endswith("domain")):
                continue
            lines = 1 + len(_BR.findall(str(i.get("text", ""))))
            out = max(out, (y - 1.0) * plot_px + float(i.get("yshift") or 0) + 17 * lines)
        return out + 4 if out else 0.0


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


def _all_zero(t: dict) -> bool:
    v = np.asarray(t.get(_value_key(t)), dtype=float)
    v = v[np.isfinite(v)]
    return v.size > 0 and not v.any()


def _trace_name(t: dict, layout: dict) -> str:
    """What a trace shows, for a sentence: its name, else its value axis' title, else its type."""
    vk = _value_key(t)
    axis = layout.get(_key(vk, _axis_num(t, vk)), {}) if vk in ("x", "y") else {}
    return _TAG.sub("", str(t.get("name") or _title(axis) or "")).strip()   # figure text already


def _difference_trace(ta: dict, tb: dict) -> dict | None:
    """B − A of one trace pair drawn like A's trace (bars coloured by sign); None where the two do not align."""
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
    d = vb - va
    t[vk] = d
    t["showlegend"] = False
    if vk == "z":
        t["hovertemplate"] = "%{x}, %{y}: B − A = %{z:.4g}<extra></extra>"
        return t
    t["hovertemplate"] = ("%{y}" if vk == "x" else "%{x}") + f": B − A = %{{{vk}:.4g}}<extra>{ta.get('name') or ''}</extra>"
    if t.get("type") == "bar":   # the sign is the news: red where B is higher, blue where A is (the heatmaps' scale)
        t["marker"] = {"color": [SIGN_COLOURS["+" if v >= 0 else "-"] for v in np.nan_to_num(d).ravel()]}
        colour = (ta.get("marker") or {}).get("color")
        if isinstance(colour, str):   # several bars per place: each keeps its own trace's colour as its outline
            t["marker"]["line"] = {"color": colour, "width": 2}
    else:
        t["marker"] = {k: v for k, v in (ta.get("marker") or {}).items() if k in ("color", "symbol", "size")}
    return t


def _place_bar(bar: dict, traces: list[dict], layout: dict, plot_w: float) -> None:
    """A colour bar beside its traces' panel: right of their x extent, over their y extent."""
    def domain(ref, letter):
        return layout.get(_key(letter, _axis_num({f"{letter}axis": ref}, letter)), {}).get("domain", [0.0, 1.0])

    xs = [domain(t.get("xaxis", "x"), "x") for t in traces]
    ys = [domain(t.get("yaxis", "y"), "y") for t in traces]
    x1 = max(d[1] for d in xs)
    y0, y1 = min(d[0] for d in ys), max(d[1] for d in ys)
    bar.update({"x": x1 + BAR_PX / plot_w, "xanchor": "left", "y": (y0 + y1) / 2, "yanchor": "middle",
                "len": max(y1 - y0, 0.05), "lenmode": "fraction", "thickness": bar.get("thickness", 14)})
    for k in ("xref", "yref"):
        bar.pop(k, None)


def _bar_title(bar: dict | None) -> str:
    t = (bar or {}).get("title")
    return ((t.get("text") if isinstance(t, dict) else t) or "").strip()


def _scales(ja: dict, jb: dict, data_a: list, data_b: list, layout: dict, layout_b: dict) -> list[tuple]:
    """The colour scales of A and B as pairs (kind, A's holder, B's holder, A's traces, B's traces): a heatmap trace
    pair with its own scale ("trace"), or a colour axis of each ("axis": B's renamed to a new one)."""
    pairs = []
    for ta, tb in zip(data_a, data_b):
        if "z" in ta and "z" in tb and not ta.get("coloraxis") and not tb.get("coloraxis"):
            pairs.append(("trace", ta, tb, [ta], [tb]))
    used = [int(m.group(1) or 1) for k in layout if (m := _COLORAXIS.match(k))]
    for k in [k for k in layout_b if _COLORAXIS.match(k)]:
        new = f"coloraxis{max(used + [1]) + 1}"
        used.append(max(used + [1]) + 1)
        layout[new] = copy.deepcopy(layout_b[k])
        on_b = [t for t in data_b if t.get("coloraxis") == k]
        for t in on_b:
            t["coloraxis"] = new
        if k in layout:
            pairs.append(("axis", layout[k], layout[new], [t for t in data_a if t.get("coloraxis") == k], on_b))
    return pairs


def _join_scales(kind: str, a: dict, b: dict, ta: list, tb: list) -> None:
    """A and B on one colour scale: the union of both extents (kept symmetric where A's is)."""
    lo_k, hi_k = ("zmin", "zmax") if kind == "trace" else ("cmin", "cmax")
    ea, eb = _z_extent(ta, a.get(lo_k), a.get(hi_k)), _z_extent(tb, b.get(lo_k), b.get(hi_k))
    if ea is None or eb is None:
        return
    lo, hi = min(ea[0], eb[0]), max(ea[1], eb[1])
    if a.get(lo_k) is not None and a.get(hi_k) is not None and a[lo_k] == -a[hi_k]:
        lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
    for holder in (a, b):
        holder[lo_k], holder[hi_k] = float(lo), float(hi)
        if kind == "trace":
            holder["zauto"] = False
        title = (holder.get("colorbar") or {}).get("title") or {}
        if isinstance(title, dict) and _CAP_NOTE.search(title.get("text") or ""):   # the cap is the higher of the two
            title["text"] = _CAP_NOTE.sub(lambda m: f"{m.group(1)} = {hi:.2g}", title["text"])


def side_by_side(fig_a: go.Figure, fig_b: go.Figure, label_a: str = "A", label_b: str = "B",
                 with_difference: bool = False, axes: str = "auto") -> go.Figure:
    """A's figure and B's as panels of one figure (module docstring); with_difference adds a B − A panel of every
    trace pair that aligns (none if no pair aligns)."""
    return combine(fig_a, fig_b, label_a, label_b, with_difference, axes)[0]


def combine(fig_a: go.Figure, fig_b: go.Figure, label_a: str, label_b: str, with_difference: bool,
            axes: str = "auto") -> tuple[go.Figure, int]:
    """side_by_side, and how many trace pairs it subtracted (drawn, or named in the title as 0 at every point)."""
    if axes not in AXES:
        raise ValueError(f"axes must be one of {', '.join(AXES)}, got {axes!r}.")
    ja, jb = _json(fig_a), _json(fig_b)
    la = ja["layout"]
    ax_a, ax_b = _axes(ja), _axes(jb)
    same = ax_a == ax_b
    diffs = []
    if with_difference and same and len(ja["data"]) == len(jb["data"]):
        diffs = [_difference_trace(ta, tb) for ta, tb in zip(ja["data"], jb["data"])]
    # a quantity of the data both agents read (the logged reward under an attention map) differs by 0 everywhere: a
    # line under the title says so instead of a row of zeros
    zero = [_trace_name(ta, la) for ta, d in zip(ja["data"], diffs) if d is not None and _all_zero(d)]
    dtraces_raw = [t for t in diffs if t is not None and not _all_zero(t)]
    n_diff = len(dtraces_raw)
    n = 3 if n_diff else 2
    share = {(letter, k): same and _compatible(ja, jb, letter, k)
             and _share(axes, _extent(ja, letter, k), _extent(jb, letter, k)) for letter in "xy" for k in ax_b[letter]}

    # the traces (in panel coordinates for now: the boxes come once the layout is chosen)
    pa = _Panel(ja, {"x": 0, "y": 0})
    pb = _Panel(jb, {"x": max(ax_a["x"]), "y": max(ax_a["y"])})
    pd_ = _Panel(ja, {"x": pb.offset["x"] + max(ax_b["x"]), "y": pb.offset["y"] + max(ax_b["y"])}, items=False)
    data_a, data_b = [pa.trace(t) for t in ja["data"]], [pb.trace(t) for t in jb["data"]]
    layout = copy.deepcopy(la)
    for k in list(layout):
        if _AXIS_KEY.match(k):
            del layout[k]
    scales = _scales(ja, jb, data_a, data_b, layout, jb["layout"])
    shared_scale = [_share(axes, _z_extent(ta, a.get("zmin", a.get("cmin")), a.get("zmax", a.get("cmax"))),
                           _z_extent(tb, b.get("zmin", b.get("cmin")), b.get("zmax", b.get("cmax"))))
                    for _, a, b, ta, tb in scales]
    diff_scale = any("z" in t for t in dtraces_raw)

    # the geometry: side by side or one per row, in pixels, then paper coordinates
    m = _margins(la)
    width = COLUMN_WIDTH
    left = m["l"]
    marker_scale = any(isinstance(t.get("marker"), dict) and (t["marker"].get("showscale") or t["marker"].get("colorbar"))
                       for t in data_a)
    right = max(m["r"], 30) if not (scales or diff_scale or marker_scale) else max(m["r"], 120)
    plot_w = width - left - right
    plot_h = max(float(la.get("height") or 450) - m["t"] - m["b"], float(MIN_PLOT_PX))
    gap = left + 10                                        # B's own tick labels and y title, as A's figure has room for
    panel_w = (plot_w - gap) / 2
    x_titles = [_visible(_title(la.get(_key("x", k), {}))) for k in ax_a["x"]]
    one_column = all(np.subtract(*la.get(_key("x", k), {}).get("domain", [0, 1])[::-1]) > 0.9 for k in ax_a["x"])
    columns = (n == 2 and one_column and panel_w >= MIN_PANEL_PX and all(shared_scale) and not marker_scale
               and all(len(t) * CHAR_PX <= panel_w for t in x_titles))
    extra = 0   # a caption as wide as the figure it came from, wrapped to this one's: the lines it gains
    for i in la.get("annotations", []) + jb["layout"].get("annotations", []):
        if _below(i) and isinstance(i.get("text"), str):
            size = float((i.get("font") or {}).get("size") or 14)
            lines = _BR.split(i["text"])
            i["text"] = "<br>".join(_wrapped(lines, (panel_w if columns else plot_w) + 0.5 * left, size * 0.55))
            extra = max(extra, int((len(_BR.split(i["text"])) - len(lines)) * size * 1.3))
    main, common, own_a, own_b = split_titles(la.get("title"), jb["layout"].get("title"))
    heads = [(label_a, own_a, pa), (label_b, own_b, pb)]
    if n_diff:
        heads.append((DIFF, [f"{plain(label_b)} minus {plain(label_a)}"], pd_))
    sub_w = panel_w if columns else plot_w
    heads = [(label, _wrapped(own, sub_w, SUB_CHAR_PX), p) for label, own, p in heads]
    for tries in range(4):   # three rows: each plot shrinks so that the rows fit MAX_ROWS_PX (lift depends on plot_h)
        head_px = [p.lift(plot_h) + 22 + 15 * len(own) + 4 for _, own, p in heads]
        if columns:
            rows = [(max(head_px), [(0.0, panel_w / plot_w), ((panel_w + gap) / plot_w, 1.0)])]
        else:
            rows = [(h, [(0.0, 1.0)]) for h in head_px]
        row_px = [h + plot_h + m["b"] + extra + ROW_GAP_PX for h, _ in rows]
        # not a figure of many small subplots: their fixed-px labels and captions would overlap
        if len(rows) < 3 or sum(row_px) <= MAX_ROWS_PX + 0.5 or len(ax_a["y"]) > 2 or tries == 3:
            break
        plot_h = max(float(MIN_PLOT_PX), plot_h - (sum(row_px) - MAX_ROWS_PX) / len(rows))
    total = sum(row_px)
    boxes, top = [], 0.0
    for (h, cols), px in zip(rows, row_px):
        y1, y0 = 1 - (top + h) / total, 1 - (top + h + plot_h) / total
        boxes += [(c0, c1, y0, y1) for c0, c1 in cols]
        top += px
    for (_, _, p), box in zip(heads, boxes):
        p.box = box

    layout.update(pa.layout_axes())
    axes_b = pb.layout_axes()
    # B's axes on A's where they are shared: matched ranges (zoom together), one explicit range
    for letter in "xy":
        for n_b in ax_b[letter]:
            if not share[(letter, n_b)]:
                continue
            b = axes_b[_key(letter, pb.axis(letter, n_b))]
            a = layout[_key(letter, _root(la, letter, n_b))]
            a["range"] = _union_range(a.get("range"), b.pop("range", None))
            if a["range"] is None:
                a.pop("range")
                values = _values_range(ja, jb, letter, n_b, reverse=a.get("autorange") == "reversed")
                if values is not None:   # plotly.js autoranges some matched groups to its empty default (-1, 4)
                    a["range"] = values
                    a.pop("autorange", None)
            b["matches"] = _ref(letter, _root(la, letter, n_b))
            if columns and letter == "y":   # beside A's: A's title says it
                b.pop("title", None)
                if _categories(_traces_on(ja, letter, n_b), "y"):
                    b["showticklabels"] = False
    layout.update(axes_b)
    for (kind, a, b, ta, tb), joined in zip(scales, shared_scale):
        bar_a, bar_b = a.setdefault("colorbar", {}), b.setdefault("colorbar", {})
        if joined:
            _join_scales(kind, a, b, ta, tb)
            b["showscale"] = False
            _place_bar(bar_a, ta + tb, layout, plot_w)   # one bar beside both panels
        else:
            _place_bar(bar_a, ta, layout, plot_w)
            _place_bar(bar_b, tb, layout, plot_w)
    for t in data_a + data_b:   # markers coloured on a scale: beside their own panel
        marker = t.get("marker") if isinstance(t.get("marker"), dict) else {}
        if marker.get("showscale") or (marker.get("colorbar") and marker.get("showscale") is not False):
            _place_bar(marker.setdefault("colorbar", {}), [t], layout, plot_w)
    for t in data_a + data_b:   # a heatmap on no scale pair (B has no counterpart) still beside its own panel
        if "z" in t and not t.get("coloraxis") and t.get("showscale") is not False \
                and not any(t is s for pair in scales for s in pair[3] + pair[4]):
            _place_bar(t.setdefault("colorbar", {}), [t], layout, plot_w)

    shown = {(t.get("name"), t.get("type")) for t in ja["data"] if t.get("showlegend", True) is not False and t.get("name")}
    for ta, tb in zip(data_a, data_b):   # a pair toggles together in the legend
        if ta.get("name") and ta.get("name") == tb.get("name"):
            ta["legendgroup"] = tb["legendgroup"] = ta.get("legendgroup") or f"{ta['name']}"
    for tb in data_b:
        if (tb.get("name"), tb.get("type")) in shown:
            tb["showlegend"] = False
    data = data_a + data_b
    for t in data:   # plotly lists every trace once there are several: only named ones belong in the legend
        if not t.get("name"):
            t["showlegend"] = False

    captions = {i.get("text") for i in la.get("annotations", []) if _below(i)}
    items = {"annotations": [pa.item(i) for i in la.get("annotations", [])]
             + [pb.item(i) for i in jb["layout"].get("annotations", []) if not (_below(i) and i.get("text") in captions)],
             "shapes": [pa.item(i, shape=True) for i in la.get("shapes", [])]
             + [pb.item(i, shape=True) for i in jb["layout"].get("shapes", [])]}
    if n_diff:
        dtraces = _difference_panel(ja, ax_a, pd_, dtraces_raw, layout, items, label_a, label_b, plot_w, total)
        if layout.get("showlegend") is False and any(t.get("legendgroup") == "sign" for t in dtraces):
            for t in data:   # the figure had no legend: now it has one, for the signs alone
                t["showlegend"] = False
            layout["showlegend"] = True
        data += dtraces

    # each panel's header (its agent) and, beneath it, what its own subtitle says that the other's does not
    headers, subs = [], []
    for label, own, p in heads:
        x0, _, _, y1 = p.box
        base = dict(x=x0, xref="paper", y=y1, yref="paper", xanchor="left", yanchor="bottom", showarrow=False,
                    align="left")
        lift = p.lift(plot_h)
        if own:
            subs.append({**base, "text": "<br>".join(own), "yshift": lift + 2, "font": {"size": 12, "color": "#444"}})
        headers.append({**base, "text": f"<b>{plain(label)}</b>", "yshift": lift + 4 + 15 * len(own),
                        "font": {"size": 14}})
    items["annotations"] += subs + headers   # the headers last: what a reader (and a test) finds as the panels' names
    layout.update(items)

    title = dict(la.get("title") or {})
    title.pop("subtitle", None)
    title_lines = _wrapped(main, width - left - 10, TITLE_CHAR_PX)
    if zero:
        named = list(dict.fromkeys(z for z in zero if z))
        what = ", ".join(named + ([f"{len(zero) - len(named)} more panel{'s' if len(zero) - len(named) > 1 else ''}"]
                                  if len(zero) > len(named) else []))
        common = list(common) + [f"{DIFF} is 0 at every point for {what} (the same data for both): not drawn"]
    common = _wrapped(common, width - left - 10, SUB_CHAR_PX * 1.15)
    top_px = _title_place(len(title_lines) + len(common), 1)[1]
    legend_px = _legend_below(layout, data, plot_w)
    height = int(top_px + total + legend_px + 8)
    title.update(text=_title_text(title_lines, common), **_title_place(len(title_lines) + len(common), height)[0])
    layout["title"] = title
    layout["margin"] = {**(la.get("margin") or {}), "l": left, "r": right, "t": int(top_px), "b": int(legend_px + 8)}
    layout["width"], layout["height"] = width, height
    return go.Figure(data=data, layout=layout), n_diff + len(zero)


def _difference_panel(ja, ax_a, pd_, dtraces, layout, items, label_a, label_b, plot_w, plot_px) -> list[dict]:
    """The B − A panel: its coordinate axes matched to A's, its value axis its own (titled B − A ...), heatmaps on a
    diverging scale centred on 0 with their own colour bar, bars by sign with both signs in the legend, a zero line."""
    axes_d = pd_.layout_axes()
    for letter in "xy":
        for n_d in ax_a[letter]:
            d = axes_d[_key(letter, pd_.axis(letter, n_d))]
            on = _traces_on(ja, letter, n_d)
            d.pop("range", None)
            if any(_value_key(t) == letter for t in on):   # values: its own scale, named as a difference
                title = _title(d)
                if title:   # a y title longer than its axis: B − A on a line of its own
                    long = letter == "y" and len(_visible(f"{DIFF} {title}")) * CHAR_PX > np.subtract(
                        *d["domain"][::-1]) * plot_px
                    d["title"] = {**(d.get("title") if isinstance(d.get("title"), dict) else {}),
                                  "text": f"{DIFF}<br>{title}" if long else f"{DIFF} {title}"}
                d.pop("autorange", None)
            else:                                           # coordinates (steps, tokens): A's
                d["matches"] = _ref(letter, _root(ja["layout"], letter, n_d))
    out = [pd_.trace(t) for t in dtraces]
    used = {_key(letter, _axis_num(t, letter)) for t in out for letter in "xy"}
    for k, d in axes_d.items():   # a value axis whose difference was 0 everywhere (not drawn): no empty ticks
        if k.startswith("y") and k not in used:
            d.update(visible=False, showgrid=False, zeroline=False)
    layout.update(axes_d)
    heat = [t for t in out if "z" in t]
    if heat:
        z = np.concatenate([_finite(t["z"]) for t in heat])
        m = float(np.abs(z).max()) if z.size and np.abs(z).max() > 0 else 1.0
        quantity = next((q for q in (_bar_title(t.get("colorbar")) for t in ja["data"] if "z" in t) if q), "")
        if not quantity:
            quantity = next((_bar_title(v.get("colorbar")) for k, v in ja["layout"].items()
                             if _COLORAXIS.match(k) and _bar_title(v.get("colorbar"))), "")
        for i, t in enumerate(heat):
            t.update(colorscale=DIVERGING, zmid=0.0, zmin=-m, zmax=m, zauto=False, showscale=i == 0)
        # A's scale note ("(0 to max shown)", "(fixed 0–1)") is not the difference's: its scale is symmetric about 0
        quantity = _SCALE_NOTE.sub("", quantity.replace("<br>", " ")).strip()
        bar = {"title": {"text": f"{DIFF} {quantity}".strip(), "side": "right"}}
        _place_bar(bar, heat, layout, plot_w)
        heat[0]["colorbar"] = bar
    for t in out:
        if "z" in t:
            continue
        line = {"type": "line", "line": {"color": "#999", "width": 1}}   # zero: what "no difference" looks like
        if t.get("orientation") == "h":
            line.update(xref=t["xaxis"], x0=0, x1=0, yref=f"{t['yaxis']} domain", y0=0, y1=1)
        else:
            line.update(xref=f"{t['xaxis']} domain", x0=0, x1=1, yref=t["yaxis"], y0=0, y1=0)
        items["shapes"].append(line)
    bars = [t for t in out if t.get("type") == "bar"]
    if bars:   # what the two colours mean: legend-only markers on the difference panel
        for sign, who in (("+", label_b), ("-", label_a)):
            out.append({"type": "scatter", "x": [None], "y": [None], "mode": "markers", "xaxis": bars[0]["xaxis"],
                        "yaxis": bars[0]["yaxis"], "hoverinfo": "skip", "showlegend": True, "legendgroup": "sign",
                        "marker": {"color": SIGN_COLOURS[sign], "symbol": "square", "size": 12},
                        "name": f"{DIFF} {'>' if sign == '+' else '<'} 0: {plain(who)} higher"})
    return out


def _below(item: dict) -> bool:
    """A caption under the plot (paper coordinates below 0)."""
    return item.get("yref", "paper") == "paper" and isinstance(item.get("y"), (int, float)) and item["y"] < 0


def _legend_below(layout: dict, data: list, plot_w: float) -> float:
    """The legend in rows under the figure (a combined figure has no free corner for it): the px it needs."""
    names = [t["name"] for t in data if t.get("name") and t.get("showlegend", True) is not False]
    if not names or layout.get("showlegend") is False:
        return 0.0
    layout["legend"] = {**(layout.get("legend") or {}), "orientation": "h", "x": 0.0, "xanchor": "left", "y": 0.0,
                        "yref": "container", "yanchor": "bottom"}
    rows, used = 1, 0.0
    for name in names:   # plotly wraps a horizontal legend at the plot's width
        w = 46 + CHAR_PX * len(_visible(name))
        if used and used + w > plot_w:
            rows, used = rows + 1, 0.0
        used += w
    return 8 + 24 * rows


# ---- one on the other ------------------------------------------------------------------------------------------------
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
    logged episode, the diagonal) once; each axis's explicit range widened to cover both. The title keeps what both
    subtitles share and gives each agent's own values on a line of its own; the legend goes under the plot."""
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
    m = _margins(ja["layout"])
    width = COLUMN_WIDTH
    main, common, own_a, own_b = split_titles(ja["layout"].get("title"), jb["layout"].get("title"))
    own = ([f"{plain(label_a)}: {' · '.join(own_a)}"] if own_a else []) + \
          ([f"{plain(label_b)}: {' · '.join(own_b)}"] if own_b else [])
    title_lines = _wrapped(main, width - m["l"] - 10, TITLE_CHAR_PX)
    sub = _wrapped(common + own, width - m["l"] - 10, SUB_CHAR_PX * 1.15)
    top_px = _title_place(len(title_lines) + len(sub), 1)[1]
    plot_h = max(float(ja["layout"].get("height") or 450) - m["t"] - m["b"], 160.0)
    legend_px = _legend_below(layout, data, width - m["l"] - m["r"])
    height = int(top_px + plot_h + m["b"] + legend_px)
    title = dict(ja["layout"].get("title") or {})
    title.pop("subtitle", None)
    title.update(text=_title_text(title_lines, sub), **_title_place(len(title_lines) + len(sub), height)[0])
    layout["title"] = title
    layout["margin"] = {**(ja["layout"].get("margin") or {}), "t": int(top_px), "b": int(m["b"] + legend_px)}
    layout["width"], layout["height"] = width, height
    return go.Figure(data=data, layout=layout)


def _diagonal(t: dict) -> bool:
    x, y = _finite(t.get("x")), _finite(t.get("y"))
    return len(x) == 2 and len(y) == 2 and np.array_equal(x, y)
