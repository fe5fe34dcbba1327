"""Every chart goes to the browser through here: long traces are thinned for display (min/max per bucket),
with a caption saying so; downloads keep every point."""
from __future__ import annotations

import streamlit as st

from analysis.publish.figures.downsample import MAX_POINTS, thin_figure


def plotly(fig, key: str) -> None:
    shown, longest = thin_figure(fig, MAX_POINTS)
    st.plotly_chart(shown, width="stretch", theme=None, key=key)   # theme=None: the same look as exports
    if longest:
        st.caption(f"Drawn from the minimum and maximum of each of {MAX_POINTS // 2:,} buckets of {longest:,} points "
                   "(peaks kept); the CSV download has every point.")
