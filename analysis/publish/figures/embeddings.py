"""Embedding figure: hidden states in 2-D, coloured by a continuous quantity (Viridis, with a colour bar)
or by discrete action (one colour per action)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .labels import readable
from .style import PALETTE, SEQUENTIAL, TEMPLATE
from .text import plain

LABELS = {"rtg": "return-to-go", "timestep": "timestep", "action": "action", "episode_return": "episode return"}


def embedding_scatter(res, colour_by: str, title: str, action_names: list[str] | None = None) -> go.Figure:
    """`res` is an analysis.interp.embeddings.Embedding. Hover shows episode, step and the colour value."""
    values = res.colour(colour_by)
    label = LABELS[colour_by]
    size = 4 if len(res.coords) > 5000 else 6
    custom = np.stack([res.episode, res.timestep, values], 1)
    hover = f"episode %{{customdata[0]:.0f}}, step %{{customdata[1]:.0f}}<br>{label} %{{customdata[2]:.4g}}<extra></extra>"
    fig = go.Figure()
    if colour_by == "action" and res.discrete:
        for k, a in enumerate(np.unique(values)):
            m = values == a
            name = action_names[int(a)] if action_names and int(a) < len(action_names) else f"action {int(a)}"
            fig.add_trace(go.Scatter(x=res.coords[m, 0], y=res.coords[m, 1], mode="markers", name=plain(readable(name)),
                                     marker=dict(size=size, color=PALETTE[k % len(PALETTE)], opacity=0.6, line=dict(width=0)),
                                     customdata=custom[m], hovertemplate=hover))
        legend = dict(title="action", itemsizing="constant")
    else:
        fig.add_trace(go.Scatter(x=res.coords[:, 0], y=res.coords[:, 1], mode="markers", showlegend=False,
                                 marker=dict(size=size, color=values, colorscale=SEQUENTIAL, opacity=0.7, line=dict(width=0),
                                             colorbar=dict(title=dict(text=label, side="right"), thickness=14)),
                                 customdata=custom, hovertemplate=hover))
        legend = None
    if res.method == "pca" and len(res.explained_variance) == 2:
        xt, yt = (f"PC{i + 1} ({100 * v:.0f}% of variance)" for i, v in enumerate(res.explained_variance))
    else:
        xt, yt = f"{plain(res.method.upper())} 1", f"{plain(res.method.upper())} 2"
    sub = f"{len(res.coords):,} steps, {res.hidden_dim}-d hidden state, coloured by {label}"
    fig.update_layout(template=TEMPLATE, title=dict(text=f"{title}<br><sup>{sub}</sup>"), xaxis_title=xt, yaxis_title=yt,
                      height=520, legend=legend)
    if res.method == "umap":
        fig.update_xaxes(showticklabels=False, ticks="")   # UMAP axes have no units
        fig.update_yaxes(showticklabels=False, ticks="")
    return fig
