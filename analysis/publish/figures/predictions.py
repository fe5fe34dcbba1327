"""Predicted vs real figures: per-feature traces over an episode, and error by horizon with CI bands."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import PALETTE, TEMPLATE
from .text import plain

REAL, PREDICTED = PALETTE[0], PALETTE[3]


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)}, {alpha})"


def prediction_traces(res, title: str) -> go.Figure:
    """One row per feature: logged (solid) and predicted (dashed) values over the episode; the predicted
    horizon shaded. `res` is an analysis.behaviour.predictions.PredictedVsReal."""
    F = len(res.features)
    fig = make_subplots(rows=F, cols=1, shared_xaxes=True, vertical_spacing=0.04 if F > 3 else 0.08,
                        subplot_titles=None)
    for j, name in enumerate(res.features):
        row, name = j + 1, plain(name)
        fig.add_trace(go.Scatter(x=res.steps, y=res.real[:, j], name="logged", mode="lines", legendgroup="real",
                                 showlegend=j == 0, line=dict(color=REAL, width=2),
                                 hovertemplate=f"{name}<br>step %{{x}}<br>logged %{{y:.4g}}<extra></extra>"), row=row, col=1)
        fig.add_trace(go.Scatter(x=res.steps, y=res.predicted[:, j], name="predicted", mode="lines", legendgroup="pred",
                                 showlegend=j == 0, connectgaps=False, line=dict(color=PREDICTED, width=2, dash="dash"),
                                 hovertemplate=f"{name}<br>step %{{x}}<br>predicted %{{y:.4g}}<extra></extra>"), row=row, col=1)
        fig.update_yaxes(title_text=name, title_font=dict(size=12), row=row, col=1)
    if res.start is not None:
        fig.add_vrect(x0=res.start, x1=res.start + res.horizon, fillcolor=PREDICTED, opacity=0.08, line_width=0,
                      row="all", col=1)
        fig.add_vline(x=res.start, line=dict(color="#666", dash="dot", width=1), row="all", col=1)
        # zoom to the horizon with some logged context on either side
        pad = max(5, res.horizon // 2)
        lo, hi = max(0, res.start - pad), min(int(res.steps[-1]), res.start + res.horizon + pad)
        fig.update_xaxes(range=[lo, hi])
        visible = (res.steps >= lo) & (res.steps <= hi)
        for j in range(F):   # static exports do not rescale y to the zoomed x range: do it here
            v = np.concatenate([res.real[visible, j], res.predicted[visible, j]])
            v = v[np.isfinite(v)]
            if len(v):
                span = max(float(v.max() - v.min()), 1e-3 * max(1.0, float(np.abs(v).max())))
                fig.update_yaxes(range=[float(v.min()) - 0.1 * span, float(v.max()) + 0.1 * span], row=j + 1, col=1)
    fig.update_xaxes(title_text="step", row=F, col=1)
    sub = (f"open loop from step {res.start}, {res.horizon} steps (shaded)" if res.start is not None
           else "one step ahead at every step")
    if res.subtitle:
        sub += f"; {res.subtitle}"
    if res.obs_quantization_floor is not None:
        sub += f"; TT quantization floor {res.obs_quantization_floor:.3g} (mean L2)"
    fig.update_layout(template=TEMPLATE, title=dict(text=f"{title}<br><sup>{sub}</sup>"),
                      height=max(340, 150 * F + 120), legend=dict(orientation="h", y=1.0, x=1, xanchor="right", yanchor="bottom"))
    return fig


def error_vs_horizon(results, title: str) -> go.Figure:
    """Mean L2 error by horizon for one or more models (analysis.behaviour.predictions.HorizonError): line with its
    bootstrap 95% CI band; a TT's quantization floor as a dotted line in its colour."""
    fig = go.Figure()
    for i, r in enumerate(results):
        c, model = PALETTE[i % len(PALETTE)], plain(r.model)
        x = np.asarray(r.horizons)
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([r.ci_high, r.ci_low[::-1]]),
                                 mode="lines", fill="toself", fillcolor=_rgba(c, 0.18), line=dict(width=0), hoverinfo="skip",
                                 showlegend=False, legendgroup=model))
        fig.add_trace(go.Scatter(x=x, y=r.mean_l2, name=model, mode="lines+markers", legendgroup=model,
                                 line=dict(color=c, width=2), marker=dict(size=5),
                                 customdata=np.stack([r.ci_low, r.ci_high], 1),
                                 hovertemplate=f"{model}<br>horizon %{{x}}<br>mean L2 %{{y:.4g}}"
                                               "<br>95% CI [%{customdata[0]:.4g}, %{customdata[1]:.4g}]<extra></extra>"))
        if r.obs_quantization_floor is not None:
            fig.add_trace(go.Scatter(x=[x[0], x[-1]], y=[r.obs_quantization_floor] * 2, mode="lines",
                                     name=f"{model}: quantization floor", legendgroup=model,
                                     line=dict(color=c, width=1.5, dash="dot"),
                                     hovertemplate=f"quantization floor {r.obs_quantization_floor:.3g}<extra></extra>"))
    n = results[0].n_starts if results else 0
    ctx = "; ".join(f"{plain(r.model)} sees {r.context} logged transitions before each start" for r in results
                    if r.reads_context)
    sub = f"mean L2 to the logged observation (raw units), {n} random starts, 95% bootstrap CI"
    fig.update_layout(template=TEMPLATE, title=dict(text=f"{title}<br><sup>{sub}" + (f"<br>{ctx}" if ctx else "") + "</sup>"),
                      xaxis_title="horizon (steps predicted open loop)", yaxis_title="mean L2 error", height=480,
                      legend=dict(orientation="h", x=0, y=-0.27, xanchor="left", yanchor="top"),
                      margin=dict(b=140, t=95 if ctx else 75))
    fig.update_yaxes(rangemode="tozero")
    return fig
