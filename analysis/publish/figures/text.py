"""Names in figures are never markup: the one helper every figure uses for a value it puts into figure text.

Plotly draws titles, subtitles, legend entries, axis titles, tick labels (category values too), annotations, bar
text and hover labels through one renderer that reads a subset of HTML (`<a href=...>`, `<b>`, `<span style=...>`,
`<br>`, `<sup>`), and hover and text templates substitute `%{...}`. A dataset's file name, an observation or action
column name, an action label from its metadata, an agent's name or the data it says it was trained on put into such
a string unescaped could put a link on a chart (and in its exported SVG and HTML), restyle it, or pull other data
into a hover label. `plain` makes a value show as the characters it is:

    title = f"Episode returns — {plain(dataset.source)}<br><sup>{n} episodes</sup>"   # the code's own markup kept
    go.Bar(x=[plain(a) for a in act_names], hovertemplate=f"{plain(name)}<br>%{{y:.3g}}<extra></extra>")

Escape the name, never the whole string, so the code's own `<br>` / `<sup>` keep working. Figure functions
(analysis/publish/figures/) take names raw and escape them where they draw them; the `title` / `title_suffix` they are
given is markup, built by the caller with every name in it passed through `plain`.

Every `&`, `<` and `>` becomes an HTML entity (plotly shows `&lt;` as `<`); `%` before `{` becomes `&#37;` (no
template placeholder; it shows as `%`); `$` becomes `&#36;` (plotly typesets a string with `$...$` in it as TeX when
MathJax is on the page, and TeX has `\\href`). Nothing else changes: `obs_0`, `cart velocity (m/s)` and
`50% quantile` are drawn as they are.
"""
from __future__ import annotations

__all__ = ["plain"]

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "$": "&#36;"}


def plain(value) -> str:
    """`value` (any object: str() of it) as plotly figure text that shows literally, in templates too."""
    s = "".join(_ENTITIES.get(ch, ch) for ch in str(value))
    return s.replace("%{", "&#37;{")
