"""Every figure fitted to the width it is drawn at (issue 27, item 3): the one layout pass the page (ui/charts.py) and
every export (analysis/publish/export.py) apply, so no figure file has to guess its width.

Plotly does not wrap text: a title, axis title or note longer than the figure runs past the SVG's edge and is cut
("…logged action (pus"), and a horizontal legend placed at a fixed paper height lands on a subtitle that wrapped. So
`fit(fig, width)`:
- wraps the title and its `<br><sup>` subtitle lines to the figure's width and pins the block to the top of the
  figure; on the page (`max_title_lines`) a title that would need more lines is cut to them with "…", and the full
  text comes back as `Fitted.caption` for the page to show under the chart;
- puts every horizontal legend in a row (or rows) of its own between the title and the plot, and reserves the top
  margin for title + legend + whatever sits on the plot's top edge (subplot titles, vline labels, colour bars);
- wraps axis titles to their axis's length and turns on plotly's `automargin` for every axis (tick labels and axis
  titles then push the margins instead of being cut);
- wraps annotations above or below the plot (footnotes, subplot titles) to the room they have, and grows the bottom
  margin for a footnote that wrapped;
- grows the figure's height by what it added to the margins, so the plot area keeps its size.

Text widths are ESTIMATED, not measured in a browser: each character's advance width in DejaVu Sans (the template's
font, installed with Chromium here) was measured once with PIL (ImageFont.getlength at 1000 px) and is tabled below
by class, times the font size. An unknown character (CJK, emoji) counts as 1 em, wider than any tabled one, so an
estimate errs towards wrapping early. Line height is plotly.js's LINE_SPACING (1.3 × the font size); `<sup>` text is
70% of it (plotly.js's `font-size:70%`).
"""
from __future__ import annotations

import itertools

import html
import re
from dataclasses import dataclass

import plotly.graph_objects as go

__all__ = ["Fitted", "fit", "text_width", "wrap_markup", "plain_text"]

# DejaVu Sans advance widths in em (measured, see above); anything not listed: 1.0 em
_EM = {}
for _w, _chars in ((0.28, "'ijl"), (0.3, "IJ"), (0.32, ",. ·"), (0.34, "/:;\\|"), (0.36, "f-"), (0.39, "t()[]"),
                   (0.41, "!r"), (0.5, "\"*_`–"), (0.53, "sz?"), (0.56, "cL"), (0.59, "kFvxy"),
                   (0.61, "PaoTYδ"), (0.64, "ebdghnpquESρ0123456789${}√"), (0.66, "K"), (0.69, "AVBRXZ"),
                   (0.73, "CU"), (0.77, "HNDG"), (0.79, "&OQ"), (0.84, "w#+<=>^~×−→←↑↓"), (0.86, "M"),
                   (0.95, "%"), (1.0, "m@W—")):
    _EM.update(dict.fromkeys(_chars, _w))
LINE = 1.3            # plotly.js LINE_SPACING: a line of text is 1.3 × its font size tall
SUP = 0.7             # plotly.js draws <sup> at 70% of the font size
DEFAULT_HEIGHT = 450  # plotly's own when a layout gives none
_TAG = re.compile(r"<[^>]*>")
# words, spaces, tags and entities; a tag shown as text (a name holding "<a href=...>", escaped by text.plain) is one
# word, so a line break never lands inside it unless it is longer than a line
_TOKEN = re.compile(r"<[^>]*>|&lt;(?:(?!&lt;|&gt;).){1,200}?&gt;|&#?\w+;|\s+|[^<&\s]+|[<&]")
_BR = re.compile(r"<br\s*/?>", re.I)


@dataclass
class Fitted:
    figure: go.Figure
    caption: str | None = None   # the whole title as plain text, when the figure shows it shortened


def plain_text(markup: str) -> str:
    """What a viewer reads: tags dropped, line breaks as spaces, entities as their characters."""
    return html.unescape(_TAG.sub("", _BR.sub(" ", markup or ""))).strip()


def text_width(markup: str, size: float) -> float:
    """Estimated width in px of one line of plotly text markup at font size `size` (tags take no room)."""
    return sum(_EM.get(ch, 1.0) for ch in html.unescape(_TAG.sub("", markup))) * size


def _units(word: str) -> list[str]:
    """A word as units that can be split between: characters, entities and tags kept whole."""
    return re.findall(r"<[^>]*>|&#?\w+;|.", word)


def _words(line: str) -> list[str]:
    """A line's words: runs of tokens between spaces (a tag shown as text counts as no space)."""
    words, cur = [], ""
    for tok in _TOKEN.findall(line):
        if tok.isspace():
            if cur:
                words.append(cur)
            cur = ""
        else:
            cur += tok
    return words + ([cur] if cur else [])


def wrap_markup(line: str, max_px: float, size: float) -> list[str]:
    """One line of markup (no <br>) as lines of at most max_px: breaks at spaces, and inside a word only when the
    word alone is too long (never inside a tag or an entity)."""
    max_px = max(max_px, 4 * size)
    out, cur = [], ""
    for word in _words(line):
        joined = f"{cur} {word}" if cur else word
        if text_width(joined, size) <= max_px:
            cur = joined
            continue
        if cur:
            out.append(cur)
            cur = ""
        if text_width(word, size) <= max_px:
            cur = word
            continue
        for u in _units(word):          # a word longer than the line: split it
            if cur and text_width(cur + u, size) > max_px:
                out.append(cur)
                cur = ""
            cur += u
    if cur or not out:
        out.append(cur)
    return out


def _lines(markup: str) -> list[tuple[bool, str]]:
    """Title markup as (is_sup, text) lines: the `<br>`s split it; <sup> may span them (attribution's titles do)."""
    lines, sup = [], False
    for part in _BR.split(markup or ""):
        starts_sup = sup
        for m in re.finditer(r"<(/?)sup\s*>", part, re.I):
            sup = not m.group(1)
        text = re.sub(r"</?sup\s*>", "", part, flags=re.I)
        is_sup = starts_sup or bool(re.match(r"\s*<sup\s*>", part, re.I))
        if text.strip():
            lines.append((is_sup, text.strip()))
    return lines


def _ellipsis(line: str, max_px: float, size: float) -> str:
    words = line.split(" ")
    while len(words) > 1 and text_width(" ".join(words) + " …", size) > max_px:
        words.pop()
    return " ".join(words) + " …"


def _fit_title(text: str, max_px: float, size: float, max_lines: int | None) -> tuple[str, int, bool]:
    """(wrapped markup, number of lines, shortened?)."""
    wrapped = [(sup, w) for sup, t in _lines(text) for w in wrap_markup(t, max_px, size * (SUP if sup else 1.0))]
    cut = max_lines is not None and len(wrapped) > max_lines
    if cut:   # the claim gets at most half the lines, the subtitle (where it was measured) the rest
        main = [i for i, (sup, _) in enumerate(wrapped) if not sup]
        keep = [i for i in main[:max(max_lines // 2, max_lines - (len(wrapped) - len(main)))]]
        keep += [i for i in range(len(wrapped)) if i not in main][:max_lines - len(keep)]
        ends = {max(i for i in keep if i in main) if any(i in main for i in keep) else None, max(keep)}
        wrapped = [(sup, _ellipsis(t, max_px, size * (SUP if sup else 1.0)) if i in ends and i + 1 < len(wrapped)
                    and (i + 1 not in keep) else t) for i, (sup, t) in enumerate(wrapped) if i in keep]
    return "<br>".join(f"<sup>{t}</sup>" if sup else t for sup, t in wrapped), len(wrapped), cut


def _size(font, default: float) -> float:
    return float(font.size) if font is not None and font.size is not None else default


def _axes(layout, letter: str):
    return [(k, layout[k]) for k in layout if re.fullmatch(f"{letter}axis\\d*", k)]


def _domain_px(layout, ref: str, letter: str, plot_px: float) -> tuple[float, float]:
    """An axis reference ('x', 'x2 domain', 'paper') as (start, end) of its domain in plot-area px."""
    if not ref or ref == "paper":
        return 0.0, plot_px
    name = ref.split()[0]
    ax = layout[f"{letter}axis{name[1:]}"] if f"{letter}axis{name[1:]}" in layout else None
    d = list(ax.domain) if ax is not None and ax.domain else [0.0, 1.0]
    return d[0] * plot_px, d[1] * plot_px


def _legend_rows(fig, max_px: float, size: float, forced: bool) -> int:
    """How many rows a horizontal legend takes: entries packed into max_px (symbol + gap ≈ 40 px each)."""
    names, seen = [], set()
    for tr in fig.data:
        if tr.showlegend is False or not tr.name:
            continue
        key = tr.legendgroup or tr.name
        if key not in seen:
            seen.add(key)
            names.append(tr.name)
    if not names or (len(names) == 1 and not forced):   # plotly shows no legend for one trace unless told to
        return 0
    rows, used = 1, 0.0
    for n in names:
        w = 40 + text_width(n, size)
        if used and used + w > max_px:
            rows, used = rows + 1, 0.0
        used += w
    return rows


def _left_needed(fig, font: float) -> float:
    """The left margin the left y axes' tick labels and titles need (estimated): a figure that fixed a wide one for
    long row labels (l=190) keeps only what its labels take, so a half-column chart keeps a plot to draw in. Plotly's
    automargin, turned on below, pushes the margin out again wherever this estimate is short. A figure with an
    annotation left of its plot keeps its margin."""
    lay = fig.layout
    if any(a.xref == "paper" and a.x is not None and float(a.x) < 0 for a in lay.annotations or []):
        return float("inf")
    need = 0.0
    for name, ax in _axes(lay, "y"):
        if ax.side == "right" or ax.overlaying:
            continue
        ref = "y" + name[5:]
        labels = [str(t) for t in (ax.ticktext or [])]
        for tr in fig.data:
            ys = getattr(tr, "y", None)
            if (getattr(tr, "yaxis", None) or "y") == ref and ys is not None:
                head = list(itertools.islice(iter(ys), 500))   # any sequence: tuples, arrays, a Series' values
                if head and isinstance(head[0], str):
                    labels += [str(y) for y in head]
        tsize = _size(ax.tickfont, font)
        label_px = max((text_width(t, tsize) for t in labels), default=0.0) or 5 * 0.64 * tsize   # numbers: ~5 digits
        lines = len(_BR.split(ax.title.text)) if ax.title is not None and ax.title.text else 0
        need = max(need, label_px + 14 + lines * _size(ax.title.font if ax.title else None, round(1.2 * font)) * LINE + 12)
    return max(need, 50.0) if need else float("inf")


def fit(fig: go.Figure, width: float, max_title_lines: int | None = None, keep_height: bool = False) -> Fitted:
    """A copy of `fig` laid out for `width` px (see the module's text); the input is never changed. max_title_lines:
    cut a longer title (the page); None wraps it whole (exports). keep_height: the caller fixed the height."""
    fig = go.Figure(fig)
    lay = fig.layout
    font = _size(lay.font, 14)
    tpl = lay.template.layout if lay.template is not None else None
    m = lay.margin
    tm = tpl.margin if tpl is not None else None
    l, r, t, b = ((getattr(m, s) if getattr(m, s) is not None else (getattr(tm, s) if tm is not None else None))
                  for s in "lrtb")
    l, r = l if l is not None else 80, r if r is not None else 80
    t, b = t if t is not None else 100, b if b is not None else 80
    height = float(lay.height or DEFAULT_HEIGHT)
    b0 = b   # the bottom margin as given: the height changes by what the margins gain or free
    l = min(l, _left_needed(fig, font))   # automargin (below) pushes it out again where the labels need it
    plot_w, plot_h = max(width - l - r, 60.0), max(height - t - b, 60.0)

    # the title: wrapped to the whole width, pinned to the figure's top-left corner (not the plot's: a y axis
    # whose labels push the left margin would move it)
    caption = None
    title_h = 0.0
    if lay.title is not None and lay.title.text:
        tsize = _size(lay.title.font, _size(tpl.title.font if tpl is not None else None, font * 1.2))
        text, n, cut = _fit_title(lay.title.text, width - 24, tsize, max_title_lines)
        if lay.meta is None:   # the title as the figure wrote it, for readers of the chart's JSON (tests, tools)
            lay.meta = {"title": lay.title.text}
        if cut:
            caption = plain_text(lay.title.text)
        title_h = n * tsize * LINE + 16
        # plotly.js 3.8 does not anchor a multi-line title's top at y: the first line's baseline sits at y (each
        # line is a tspan with y set), while a one-line title's baseline sits 0.7 em below y. Measured in Chromium,
        # so y is placed by hand for the glyphs' top (DejaVu's ascent: 0.93 em) to sit 8 px below the figure's top
        title_y = 8 + 0.93 * tsize - (0.7 * tsize if n == 1 else 0)
        lay.title.update(text=text, xref="container", x=0, xanchor="left", yref="container", y=1 - title_y / height,
                         yanchor="top", pad=dict(t=0, l=12, r=12, b=0))

    # horizontal legends: a block of their own under the title
    legend_h = 0.0
    if lay.showlegend is not False and lay.legend.orientation == "h":
        lsize = _size(lay.legend.font, font)
        rows = _legend_rows(fig, plot_w, lsize, lay.showlegend is True)
        if rows:
            legend_h = rows * (lsize * LINE + 6) + 6
            if lay.legend.y is not None and lay.legend.y < 0 and (lay.legend.yref or "paper") == "paper":
                b = max(b - legend_h, 60)   # the room the figure kept for it under the plot is free now
            lay.legend.update(yref="container", y=1 - (title_h + 4) / height if height else 1, yanchor="top")

    # what sits on the plot's top edge: annotations just above it (subplot titles, vline labels) and colour bars;
    # what sits under it: footnotes
    above, below = 0.0, 0.0
    by_height: dict[int, list] = {}
    for a in lay.annotations or []:
        if not a.text or a.y is None or not ((a.yref or "").endswith("domain") or a.yref == "paper"):
            continue       # an annotation in data coordinates sits inside the plot
        y0, y1 = _domain_px(lay, a.yref, "y", plot_h)
        by_height.setdefault(round(y0 + float(a.y) * (y1 - y0)), []).append((a, y0, y1 - y0))
    for y_px, group in by_height.items():
        xs = [float(a.x) if a.x is not None else 0.5 for a, _, _ in group]
        for (a, y0, span), x in zip(group, xs):
            asize = _size(a.font, font)
            h_before = len(_BR.split(a.text)) * asize * LINE
            if (a.xref or "") == "paper":   # room: to the figure's edge, or half-way to the next one at this height
                x_px = l + x * plot_w
                room = {"left": width - x_px, "right": x_px}.get(a.xanchor, 2 * min(x_px, width - x_px))
                others = [abs(x - o) * plot_w for o in xs if o != x]
                if others and a.xanchor not in ("left", "right"):
                    room = min(room, min(others))
                a.text = "<br>".join(w for part in _BR.split(a.text) for w in wrap_markup(part, room - 10, asize))
            h = len(_BR.split(a.text)) * asize * LINE
            anchor = a.yanchor or "auto"
            if anchor == "auto":   # plotly: a paper-referenced note without arrow hangs from its closest side
                frac = (y_px - y0) / max(span, 1)
                anchor = "middle" if a.showarrow is not False else \
                    ("top" if frac >= 2 / 3 else "bottom" if frac <= 1 / 3 else "middle")
            lift = float(a.yshift or 0)
            top = y_px + lift + {"bottom": h, "middle": h / 2, "top": 0}[anchor]
            if top > plot_h:
                above = max(above, top - plot_h)
            if y_px < 0:   # a footnote: its top stays where it was, it grows downwards
                top_before = y_px + lift + {"bottom": h_before, "middle": h_before / 2, "top": 0}[anchor]
                a.update(y=(top_before - lift - y0) / span, yanchor="top")
                below = max(below, -(top_before - h))
    for tr in fig.data:
        cb = getattr(tr, "colorbar", None)
        if cb is None or getattr(tr, "showscale", None) is False:
            continue
        if cb.y is not None and (cb.lenmode or "fraction") == "fraction":
            length = float(cb.len if cb.len is not None else 1.0)
            top = {"bottom": float(cb.y) + length, "top": float(cb.y)}.get(cb.yanchor, float(cb.y) + length / 2)
            above = max(above, (top - 1) * plot_h + 10)

    need_t = title_h + legend_h + above + (8 if title_h or legend_h else 0)
    new_t = max(t, need_t)
    xaxis_title_h = 0.0
    # axis titles: wrapped to their axis's length; automargin lets titles and tick labels push the margins
    for letter, length in (("x", plot_w), ("y", plot_h - (new_t - t) * keep_height)):
        for name, ax in _axes(lay, letter):
            ax.automargin = True
            if ax.title is not None and ax.title.text:
                asize = _size(ax.title.font, round(1.2 * font))   # plotly.js: an axis title is 1.2 × the font
                d = list(ax.domain) if ax.domain else [0.0, 1.0]
                room = (d[1] - d[0]) * length - 10
                if letter == "x":   # centred under its axis: it may be as wide as the figure around that centre allows
                    centre = l + (d[0] + d[1]) / 2 * plot_w
                    room = max(room, 2 * min(centre, width - centre) - 16)
                lines = [w for part in _BR.split(ax.title.text) for w in wrap_markup(part, room, asize)]
                ax.title.text = "<br>".join(lines)
                if letter == "x":
                    xaxis_title_h = max(xaxis_title_h, (len(lines) - 1) * asize * LINE)
    new_b = max(b, below + 10 + xaxis_title_h) if below else b
    grow = (new_t - t) + (new_b - b0)
    lay.margin.update(t=new_t, b=new_b, l=l, r=r)
    if not keep_height:
        lay.height = height + grow
        if title_h:
            lay.title.y = 1 - title_y / lay.height
        if legend_h:
            lay.legend.y = 1 - (title_h + 4) / lay.height
    return Fitted(fig, caption)
