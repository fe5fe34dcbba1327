"""Dataset figures: returns histogram, one episode's rewards / return-to-go and signals."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .labels import add_note, constant, constant_note, readable, top_margin
from .style import PALETTE, TEMPLATE
from .text import plain


def returns_histogram(returns: np.ndarray, title: str, bins: int = 30) -> go.Figure:
    """Distribution of episode returns: return conditioning is only learnable where this is spread."""
    returns = np.asarray(returns, dtype=float)
    fig = go.Figure(go.Histogram(x=returns, nbinsx=bins, marker=dict(color=PALETTE[0], line=dict(color="white", width=1)),
                                 hovertemplate="return %{x}<br>%{y} episodes<extra></extra>"))
    fig.add_vline(x=float(returns.mean()), line=dict(color=PALETTE[3], dash="dash"),
                  annotation_text=f"mean {returns.mean():.4g}", annotation_position="top")
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title="episode return", yaxis_title="episodes",
                      bargap=0.02, height=340, showlegend=False)
    return fig


def episode_timeline(rewards: np.ndarray, returns_to_go: np.ndarray, title: str) -> go.Figure:
    """Reward per step and return-to-go over one episode. A reward that never changes (CartPole's 1 at every step,
    a failed Key-to-Door episode's 0) is a line under the title, not a block of bars hiding the return-to-go."""
    t = np.arange(len(rewards))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t, y=returns_to_go, name="return-to-go", line=dict(color=PALETTE[0], width=2)))
    flat = constant(rewards)
    if flat is None:
        fig.add_trace(go.Bar(x=t, y=rewards, name="reward", marker_color=PALETTE[1], yaxis="y2", opacity=0.7))
        fig.update_layout(yaxis2=dict(title="reward", overlaying="y", side="right", showgrid=False),
                          legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))
    else:
        title = add_note(title, constant_note('reward', flat))
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title="step", yaxis_title="return-to-go",
                      height=340, showlegend=flat is None, margin=dict(t=top_margin(title)))
    return fig


def episode_signals(values: np.ndarray, names: list[str], title: str, y_title: str, discrete_labels: list[str] | None = None) -> go.Figure:
    """One line per feature over an episode (observations or actions); discrete actions as steps."""
    values = np.asarray(values)
    values = values.reshape(len(values), -1)
    t = np.arange(len(values))
    fig = go.Figure()
    for j, name in enumerate(names):
        fig.add_trace(go.Scatter(x=t, y=values[:, j], name=plain(name), mode="lines",
                                 line=dict(color=PALETTE[j % len(PALETTE)], width=2,
                                           shape="hv" if discrete_labels is not None else "linear")))
    # a few features fit in a row above the plot; more go in a column at the right
    legend = dict(orientation="h", y=1.12, x=1, xanchor="right") if len(names) <= 4 else dict(orientation="v")
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title="step", yaxis_title=y_title, height=340,
                      legend=legend, showlegend=len(names) > 1)
    if discrete_labels is not None:
        fig.update_yaxes(tickmode="array", tickvals=list(range(len(discrete_labels))),
                         ticktext=[plain(readable(x)) for x in discrete_labels])
    return fig
