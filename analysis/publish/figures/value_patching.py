"""Patching figures on a value agent's Q (analysis.interp.value_patching): each hidden unit's share of the clean Q
restored (Markov), and how long a recurrent state patched in from another episode moves Q (drqn)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .style import PALETTE, TEMPLATE

OWN, PATCHED = "#7f7f7f", PALETTE[3]


def unit_patching_bars(res, title: str) -> go.Figure:
    """One bar per hidden unit (and the whole layer): (patched − corrupted) / (clean − corrupted); 1 = restores the
    clean output alone, 0 = carries none of the difference."""
    x, y, colour = [], [], []
    for layer, eff, whole in zip(res.layers, res.effects, res.whole):
        x += [f"{layer} · unit {j}" for j in range(len(eff))] + [f"{layer} · all"]
        y += [float(e) for e in eff] + [float(whole)]
        colour += [PALETTE[0]] * len(eff) + [PALETTE[7]]
    fig = go.Figure(go.Bar(x=x, y=y, marker_color=colour, marker_line_width=0,
                           hovertemplate="%{x}<br>effect %{y:.3g}<extra></extra>"))
    fig.add_hline(y=1, line=dict(color="#444", width=1, dash="dash"))
    fig.add_hline(y=0, line=dict(color="#444", width=1))
    sub = (f"{res.label}: clean (episode {res.episode}, step {res.step}) {res.clean:.4g}, corrupted (episode "
           f"{res.corrupt_episode}, step {res.corrupt_step}) {res.corrupted:.4g}; black: the whole layer")
    fig.update_layout(template=TEMPLATE, title=dict(text=f"{title}<br><sup>{sub}</sup>"), showlegend=False,
                      xaxis_title="patched activation", yaxis_title="share of the clean output restored",
                      height=420, bargap=0.2)
    if len(x) > 40:   # a wide layer: its unit names would overprint; hover names each bar
        fig.update_xaxes(showticklabels=False, title_text=f"{len(x)} patched activations, layer by layer (hover for each)")
    return fig


def memory_patching_lines(res, title: str) -> go.Figure:
    """The receiver episode's own output over its later steps (grey) and with the donor's recurrent state patched in
    after step t (vermillion, dashed); the gap is what the patched state still carries."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=res.steps, y=res.corrupted, name=f"episode {res.corrupt_episode} as logged", mode="lines",
                             line=dict(color=OWN, width=2),
                             hovertemplate="step %{x}<br>own %{y:.4g}<extra></extra>"))
    fig.add_trace(go.Scatter(x=res.steps, y=res.patched, name=f"with episode {res.episode}'s state after step {res.step}",
                             mode="lines+markers", line=dict(color=PATCHED, width=2, dash="dash"), marker=dict(size=5),
                             hovertemplate="step %{x}<br>patched %{y:.4g}<extra></extra>"))
    change = np.abs(res.change)
    first = change[0] if len(change) else 0.0
    faded = np.flatnonzero(change < 0.1 * first)
    lasts = (f"the change falls under a tenth of its size at step {int(res.steps[faded[0]])}" if first > 0 and len(faded)
             else "the change stays above a tenth of its first size to the episode's end" if first > 0
             else "the patched state changes nothing")
    fig.update_layout(template=TEMPLATE, title=dict(text=f"{title}<br><sup>{res.label}; {lasts}</sup>"),
                      xaxis_title=f"step of episode {res.corrupt_episode}", yaxis_title=f"{res.label} (return units)",
                      height=440, legend=dict(orientation="h", x=0, y=-0.22, xanchor="left", yanchor="top"),
                      margin=dict(b=130))
    fig.add_vline(x=res.step, line=dict(color="#444", width=1, dash="dot"))
    # zoom to where the patch still shows (twice the steps it takes to fade, at least 20): on a 500-step episode the
    # gap is a few pixels at the left edge; the data keeps every step
    last = int(res.steps[-1]) if len(res.steps) else res.step
    fade = int(res.steps[faded[0]]) if first > 0 and len(faded) else last
    hi = min(last, res.step + max(20, 2 * (fade - res.step)))
    if hi < last:
        seen = res.steps <= hi
        v = np.concatenate([res.corrupted[seen], res.patched[seen]])
        pad = 0.08 * max(float(np.ptp(v)), 1e-6)
        fig.update_xaxes(range=[res.step - 0.5, hi + 0.5])
        fig.update_yaxes(range=[float(v.min()) - pad, float(v.max()) + pad])   # exports do not rescale y to the zoom
        fig.layout.title.text = fig.layout.title.text.replace("</sup>", f"; steps {res.step}–{hi} of {last} shown</sup>")
    return fig
