"""Figures small enough to send to a browser: a 10^6-step episode is 79 MB of chart JSON per rerun.

Lines and bars longer than `max_points` keep the minimum and the maximum of each of max_points / 2
equal buckets (peaks and dips survive, unlike strided sampling); histograms of many values are binned
here. Only what is drawn changes: CSV downloads keep every step (Figured.data).
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

MAX_POINTS = 4_000
_PER_POINT = ("customdata", "text", "hovertext")


def minmax_indices(y: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Sorted indices of the min and max of each bucket (plus both ends); all indices when y is short."""
    n = len(y)
    buckets = max(max_points // 2, 1)
    if n <= max_points:
        return np.arange(n)
    size = -(-n // buckets)
    padded = np.concatenate([y, np.repeat(y[-1], buckets * size - n)]).reshape(buckets, size)
    offsets = np.arange(buckets) * size
    idx = np.concatenate([[0, n - 1], offsets + padded.argmin(axis=1), offsets + padded.argmax(axis=1)])
    return np.unique(np.minimum(idx, n - 1))


def thin_figure(fig: go.Figure, max_points: int = MAX_POINTS) -> tuple[go.Figure, int]:
    """(a copy of fig with every long trace thinned, the longest original trace length or 0 if none was).
    Markers-only scatters (embeddings) are left alone: each point there is a step the user may hover."""
    longest, traces = 0, []
    for trace in fig.data:
        out = trace
        if trace.type in ("scatter", "scattergl", "bar") and trace.y is not None and len(trace.y) > max_points \
                and (trace.type == "bar" or "lines" in (trace.mode or "lines")):
            y = np.asarray(trace.y)
            if y.ndim == 1 and np.issubdtype(y.dtype, np.number):
                idx = minmax_indices(y, max_points)
                x = np.asarray(trace.x) if trace.x is not None else np.arange(len(y))
                update = {"x": x[idx], "y": y[idx]}
                for attr in _PER_POINT:
                    value = getattr(trace, attr, None)
                    if value is not None and not isinstance(value, str) and len(value) == len(y):
                        update[attr] = np.asarray(value)[idx]
                out = type(trace)(trace, **update)
                longest = max(longest, len(y))
        elif trace.type == "histogram" and trace.x is not None and len(trace.x) > max_points:
            x = np.asarray(trace.x, float)
            counts, edges = np.histogram(x, bins=int(trace.nbinsx or 30))
            out = go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), marker=trace.marker.to_plotly_json(),
                         name=trace.name, showlegend=trace.showlegend, hovertemplate="%{x:.4g}<br>%{y} <extra></extra>")
            longest = max(longest, len(x))
        traces.append(out)
    if not longest:
        return fig, 0
    return go.Figure(data=traces, layout=fig.layout), longest
