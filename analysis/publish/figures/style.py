"""The one publication template every seqlens figure uses, and its colour palette."""
from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

# Okabe-Ito: distinguishable under the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]

pio.templates["seqlens"] = go.layout.Template(
    layout=go.Layout(
        font=dict(family="DejaVu Sans, Arial, sans-serif", size=14, color="#222"),
        title=dict(font=dict(size=17), x=0.0, xanchor="left", xref="paper"),
        colorway=PALETTE,
        paper_bgcolor="white",
        plot_bgcolor="white",
        xaxis=dict(showline=True, linecolor="#444", ticks="outside", gridcolor="#e6e6e6", zeroline=False),
        yaxis=dict(showline=True, linecolor="#444", ticks="outside", gridcolor="#e6e6e6", zeroline=False),
        margin=dict(l=70, r=30, t=60, b=60),
        legend=dict(bgcolor="rgba(255,255,255,0.8)"),
    )
)
TEMPLATE = "seqlens"


# Sequential and diverging scales for heatmaps: perceptually uniform, colour-blind safe.
SEQUENTIAL = "Viridis"
DIVERGING = "RdBu_r"
# Token types of a Decision Transformer step, always in this order and these colours.
TOKEN_COLOURS = {"return-to-go": PALETTE[0], "state": PALETTE[1], "action": PALETTE[2]}
