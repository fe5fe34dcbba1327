"""Return-conditioning figures: achieved vs target return, actions and attention per target, the offline
return-to-go shift."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .labels import readable
from .style import PALETTE, TEMPLATE, TOKEN_COLOURS
from .text import plain


def sweep_returns(summary: pd.DataFrame, title: str, data_range: tuple[float, float] | None = None) -> go.Figure:
    """Mean achieved return with its 95% CI band and IQM, against the target; the diagonal is a perfect
    return-conditioned agent; the shaded band is the range of returns in the training data."""
    s = summary.sort_values("target_return")
    x = s["target_return"].to_numpy()
    fig = go.Figure()
    if data_range is not None:
        fig.add_hrect(y0=data_range[0], y1=data_range[1], fillcolor="#999", opacity=0.09, line_width=0,
                      annotation_text="returns in the training data", annotation_position="bottom right")
    lo, hi = min(x.min(), s["ci_low"].min()), max(x.max(), s["ci_high"].max())
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="achieved = target",
                             line=dict(color="#777", dash="dash", width=1.5)))
    fig.add_trace(go.Scatter(x=np.r_[x, x[::-1]], y=np.r_[s["ci_high"], s["ci_low"][::-1]], fill="toself",
                             fillcolor="rgba(0,114,178,0.18)", line=dict(width=0), mode="lines", name="95% CI of the mean",
                             hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=s["mean"], mode="lines+markers", name="mean", line=dict(color=PALETTE[0], width=2.5),
                             customdata=np.c_[s["ci_low"], s["ci_high"], s["episodes"]],
                             hovertemplate="target %{x:.4g}<br>mean %{y:.4g}<br>95% CI [%{customdata[0]:.4g}, "
                                           "%{customdata[1]:.4g}]<br>%{customdata[2]} episodes<extra></extra>"))
    fig.add_trace(go.Scatter(x=x, y=s["iqm"], mode="markers", name="interquartile mean",
                             marker=dict(color=PALETTE[3], symbol="diamond", size=9),
                             error_y=dict(type="data", symmetric=False, array=s["iqm_ci_high"] - s["iqm"],
                                          arrayminus=s["iqm"] - s["iqm_ci_low"], color=PALETTE[3], thickness=1)))
    fig.update_layout(template=TEMPLATE, title=title, height=440, xaxis_title="target return (asked for)",
                      yaxis_title="achieved return", legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right"),
                      margin=dict(t=100))
    return fig


def sweep_actions(dist: pd.DataFrame, discrete: bool, title: str, action_labels: list[str] | None = None) -> go.Figure:
    """Discrete: share of each action per target (stacked). Continuous: median and 25-75% band per dimension.
    action_labels: one name per discrete action, or per continuous action dimension (the dataset's own)."""
    fig = go.Figure()
    if discrete:
        for a, grp in dist.groupby("action"):
            label = action_labels[a] if action_labels and a < len(action_labels) else f"action {a}"
            fig.add_trace(go.Bar(x=grp["target_return"].astype(str), y=grp["share"], name=plain(readable(label)),
                                 marker_color=PALETTE[int(a) % len(PALETTE)],
                                 hovertemplate=f"{plain(readable(label))}<br>target %{{x}}: %{{y:.1%}}<extra></extra>"))
        fig.update_layout(barmode="stack", yaxis_tickformat=".0%", yaxis_title="share of actions taken")
    else:
        for d, grp in dist.groupby("dim"):
            c = PALETTE[int(d) % len(PALETTE)]
            x = grp["target_return"].to_numpy()
            fig.add_trace(go.Scatter(x=np.r_[x, x[::-1]], y=np.r_[grp["q75"], grp["q25"][::-1]], fill="toself", mode="lines",
                                     fillcolor=c, opacity=0.2, line=dict(width=0), hoverinfo="skip", showlegend=False))
            name = action_labels[int(d)] if action_labels and int(d) < len(action_labels) else f"action dim {d}"
            fig.add_trace(go.Scatter(x=x, y=grp["q50"], mode="lines+markers", name=f"{plain(readable(name))} (median, IQR)",
                                     line=dict(color=c, width=2)))
        fig.update_layout(yaxis_title="action")
    fig.update_layout(template=TEMPLATE, title=title, height=380, xaxis_title="target return",
                      legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))
    return fig


def sweep_attention(shares: pd.DataFrame, title: str) -> go.Figure:
    """Share of the action token's attention per token type, against the target return."""
    fig = go.Figure()
    for name, grp in shares.groupby("token", sort=False):
        fig.add_trace(go.Scatter(x=grp["target_return"], y=grp["share"], mode="lines+markers", name=plain(name),
                                 line=dict(color=TOKEN_COLOURS.get(name, PALETTE[0]), width=2)))
    fig.update_layout(template=TEMPLATE, title=title, height=380, xaxis_title="target return",
                      yaxis_title="share of attention", yaxis_tickformat=".0%",
                      legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))
    return fig


def shift_replay(shifts: np.ndarray, series: np.ndarray, logged: np.ndarray | None, title: str, y_title: str,
                 steps: np.ndarray | None = None, logged_name: str = "logged action") -> go.Figure:
    """series [S, T]: one line per return-to-go shift along the logged episode (blue = less return asked,
    orange = more); the logged actions dotted when given."""
    S, T = series.shape
    x = np.arange(T) if steps is None else steps
    fig = go.Figure()
    order = np.argsort(shifts)
    for rank, i in enumerate(order):
        frac = rank / max(S - 1, 1)
        colour = f"rgb({int(0 + 230 * frac)},{int(114 - 55 * frac)},{int(178 - 178 * frac)})"   # blue -> orange
        fig.add_trace(go.Scatter(x=x, y=series[i], mode="lines", name=f"R shifted {shifts[i]:+g}",
                                 line=dict(color=colour, width=2.5 if shifts[i] == 0 else 1.6,
                                           dash="solid")))
    if logged is not None:
        fig.add_trace(go.Scatter(x=x, y=logged, mode="lines", name=logged_name,
                                 line=dict(color="#222", dash="dot", width=1.2, shape="hv")))
    fig.update_layout(template=TEMPLATE, title=title, height=400, xaxis_title="episode step", yaxis_title=y_title,
                      legend=dict(orientation="v"))
    return fig
