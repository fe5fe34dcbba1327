"""Live play figures (analysis/media/live.py): what the DT proposes now, where its action token looks, and its value beside
the return-to-go over the game so far."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .style import PALETTE, TEMPLATE, TOKEN_COLOURS
from .text import plain

_COMPACT = dict(l=64, r=12, t=58, b=44)
_LEGEND = dict(orientation="h", y=1.0, x=0, xanchor="left", yanchor="bottom")   # under the title, above the plot
_WITH_LEGEND = {**_COMPACT, "t": 92}


def proposal(probs_or_action: np.ndarray, discrete: bool, labels: list[str], taken: int | None = None) -> go.Figure:
    """Discrete: the probability of each action (the one it takes outlined); continuous: its action per dimension."""
    p = np.asarray(probs_or_action, np.float64)
    names = [plain(str(x).replace("_", " ")) for x in labels[:len(p)]]
    if discrete:
        line = [2.5 if i == taken else 0 for i in range(len(p))]
        fig = go.Figure(go.Bar(x=names, y=p, marker=dict(color=PALETTE[2], line=dict(width=line, color="#222")),
                               text=[f"{v:.0%}" for v in p], textposition="outside", cliponaxis=False,
                               hovertemplate="%{x}: %{y:.1%}<extra></extra>"))
        fig.update_layout(yaxis=dict(range=[0, 1.15], tickformat=".0%", title="probability"),
                          title="The agent's policy here<br><sup>outlined: the action it takes if it acts</sup>")
    else:
        fig = go.Figure(go.Bar(x=names, y=p, marker_color=PALETTE[2], text=[f"{v:+.2f}" for v in p],
                               textposition="outside", cliponaxis=False))
        fig.update_layout(yaxis_title="action", title="The agent's action here")
    fig.update_layout(template=TEMPLATE, height=260, margin=_COMPACT, showlegend=False)
    return fig


def attention(att: np.ndarray) -> go.Figure:
    """att [K, 3] share per step back (0 = now) and token type, stacked: where the action token looks."""
    K = att.shape[0]
    fig = go.Figure([go.Bar(x=np.arange(K), y=att[:, k], name=name, marker_color=TOKEN_COLOURS[name],
                            hovertemplate=f"{name}, %{{x}} steps back: %{{y:.1%}}<extra></extra>")
                     for k, name in enumerate(TOKEN_COLOURS)])
    fig.update_layout(template=TEMPLATE, barmode="stack", height=290, margin=_WITH_LEGEND, yaxis_tickformat=".0%",
                      title="Where the action token looks<br><sup>layers and heads averaged</sup>",
                      xaxis_title="steps back (0 = now)", yaxis_title="attention", legend=_LEGEND)
    fig.update_xaxes(autorange="reversed")   # the past on the left, now on the right
    return fig


def value_track(rtg: np.ndarray, value: np.ndarray, earned: np.ndarray, by_agent: np.ndarray) -> go.Figure:
    """Per step of the game: the return-to-go the DT is asked for, its value (the return it infers with the RTG
    hidden) and the return earned so far; the steps the agent took shaded."""
    t = np.arange(len(rtg))
    fig = go.Figure()
    for a, b in _runs(by_agent):
        fig.add_vrect(x0=a - 0.5, x1=b - 0.5, fillcolor=PALETTE[2], opacity=0.09, line_width=0, layer="below")
    fig.add_trace(go.Scatter(x=t, y=rtg, name="return-to-go (target − rewards)", line=dict(color=TOKEN_COLOURS["return-to-go"], width=2)))
    if np.isfinite(value).any():
        fig.add_trace(go.Scatter(x=t, y=value, name="value (RTG hidden)", line=dict(color=PALETTE[3], width=2, dash="dash")))
    fig.add_trace(go.Scatter(x=t, y=earned, name="return earned", line=dict(color="#555", width=1.5, dash="dot")))
    fig.update_layout(template=TEMPLATE, height=310, margin=_WITH_LEGEND, xaxis_title="step", yaxis_title="return",
                      title="Return-to-go, value and return earned<br><sup>shaded: steps the agent took</sup>",
                      legend=_LEGEND)
    return fig


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[(start, stop)] of the runs of True in flags."""
    f = np.concatenate([[False], np.asarray(flags, bool), [False]])
    edges = np.flatnonzero(np.diff(f.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))
