"""Every chart goes to the browser through here: laid out for the width it gets (analysis/publish/figures/fit.py:
titles, legends, axis titles and notes wrapped and given room; a title too long for the chart is cut and shown whole
in a caption under it), and long traces thinned for display (min/max per bucket), with a caption saying so;
downloads keep every point."""
from __future__ import annotations

import streamlit as st

from analysis.publish.figures.downsample import MAX_POINTS, thin_figure
from analysis.publish.figures.fit import fit
from ui.text import md_escape

# The main column's width at the narrowest supported viewport (1000 px, sidebar open, layout="wide"), measured in
# Chromium 1.67: 540 px (the sidebar takes 300), a half column 262 (tests/test_browser_gallery.py checks every chart's
# text against its own box at 1000 and 1600 px). A chart is drawn at the width its text was wrapped for, centred in
# its container: stretched to a 1140 px column (1600 px viewport), a title wrapped for 540 read as a narrow block
# over a wide plot. The server never learns the viewport (Streamlit does not send it), so one width serves all.
PAGE_WIDTH = 540
MAX_TITLE_LINES = 4   # more than this on a page: the title is cut and shown whole in a caption


# Streamlit draws a metric's value, a metric's label and a button's label in one line and cuts what does not fit
# ("termi…", "Return…", "Let th…" in a quarter of a half column at 1000 px): they wrap instead (a metric's value also
# shrinks with the viewport down to 1.25rem), so every word stays readable.
PAGE_CSS = """<style>
[data-testid="stMetricValue"] { font-size: clamp(1.25rem, 2.4vw, 2.25rem); }
[data-testid="stMetricValue"] *, [data-testid="stMetricLabel"] *, [data-testid="stMain"] button * {
  white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
  overflow-wrap: anywhere; }
</style>"""


def page_style() -> None:
    """The app's own CSS (app.py, every page)."""
    st.html(PAGE_CSS)


def _columns_around() -> int:
    """How many st.columns the chart is drawn in (0: the page's full width). The pages' columns that hold charts are
    halves (ui.compare.columns, Live play's two), so each halves the width. Reads Streamlit's container stack (not
    public API); outside a script run, 0."""
    try:
        from streamlit.delta_generator_singletons import get_last_dg_added_to_context_stack

        dg = get_last_dg_added_to_context_stack()
        return 0 if dg is None else sum(t == "column" for t in dg._ancestor_block_types)
    except Exception:   # noqa: BLE001 - a Streamlit without these internals: lay out for the whole width
        return 0


def width() -> float:
    """The width, in px, a chart drawn here gets at the narrowest viewport (st.columns' gap taken off)."""
    w = float(PAGE_WIDTH)
    for _ in range(_columns_around()):
        w = (w - 16) / 2
    return w


def drawn_width(fig, fitted_for: float) -> int:
    """The px width a chart is drawn at: the width it was fitted for, or its own where it asks for more (a long
    window's rollout bars); Streamlit narrows a chart wider than its container to the container."""
    own = fig.layout.width
    return int(max(fitted_for, own or 0))


def plotly(fig, key: str) -> None:
    w = width()
    fitted = fit(fig, w, max_title_lines=MAX_TITLE_LINES)
    shown, longest = thin_figure(fitted.figure, MAX_POINTS)
    with st.container(horizontal_alignment="center"):   # theme=None: the same look as exports
        st.plotly_chart(shown, width=drawn_width(shown, w), theme=None, key=key)
    if fitted.caption:
        st.caption(md_escape(fitted.caption))
    if longest:
        st.caption(f"Drawn from the minimum and maximum of each of {MAX_POINTS // 2:,} buckets of {longest:,} points "
                   "(peaks kept); the CSV download has every point.")
