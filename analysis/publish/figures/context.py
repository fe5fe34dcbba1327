"""Context ablation figures: return (or action prediction) vs the context K' a DT sees, with a bootstrap
CI band, and separately trained agents as horizontal reference lines."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .predictions import _rgba
from .style import PALETTE, TEMPLATE
from .text import plain

_DASHES = ["dash", "dot", "dashdot", "longdash", "longdashdot"]


def _context_figure(contexts, value, lo, hi, name, references, y_title, title, sub, trained, rf) -> go.Figure:
    c = PALETTE[0]
    x = np.asarray(contexts)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi, lo[::-1]]), mode="lines", fill="toself",
                             fillcolor=_rgba(c, 0.18), line=dict(width=0), hoverinfo="skip", showlegend=False))
    fig.add_trace(go.Scatter(x=x, y=value, mode="lines+markers", name=f"{plain(name)}, history cut to K'",
                             line=dict(color=c, width=2.5), marker=dict(size=7), customdata=np.stack([lo, hi], 1),
                             hovertemplate="K' = %{x}<br>%{y:.4g} [%{customdata[0]:.4g}, %{customdata[1]:.4g}]<extra></extra>"))
    for i, r in enumerate(references):
        rc = PALETTE[(i + 1) % len(PALETTE)]
        k = "whole episode" if r.context is None else f"K={r.context}"
        fig.add_trace(go.Scatter(x=[x.min(), x.max()], y=[r.mean, r.mean], mode="lines", name=f"{plain(r.name)} ({k})",
                                 line=dict(color=rc, width=2, dash=_DASHES[i % len(_DASHES)]),
                                 hovertemplate=f"{plain(r.name)}<br>%{{y:.4g}} [{r.ci_low:.4g}, {r.ci_high:.4g}]<extra></extra>"))
    # annotations on a log axis take log10 coordinates (add_vline converts by itself)
    fig.add_vline(x=trained, line=dict(color="#888", width=1, dash="dot"))
    fig.add_annotation(x=np.log10(trained), y=1.0, yref="paper", text=f"trained K={trained}",
                       showarrow=False, yanchor="bottom", font=dict(size=11, color="#555"))
    if rf != trained:
        fig.add_vline(x=rf, line=dict(color="#888", width=1, dash="dot"))
        fig.add_annotation(x=np.log10(rf), y=1.0, yref="paper", text=f"receptive field {rf}", showarrow=False,
                           yanchor="bottom", xanchor="right", font=dict(size=11, color="#555"))
    fig.update_xaxes(type="log", tickvals=list(x), ticktext=[str(int(k)) for k in x],
                     title_text="context K' at inference (steps of history, log scale)")
    fig.update_layout(template=TEMPLATE, title=dict(text=f"{title}<br><sup>{sub}</sup>"), yaxis_title=y_title,
                      height=500, legend=dict(orientation="h", x=0, y=-0.3, xanchor="left", yanchor="top"),
                      margin=dict(b=150, t=80))
    return fig


def context_returns_figure(res, title: str) -> go.Figure:
    """analysis.behaviour.context.ContextReturns: mean return vs K' with its 95% CI band; references as lines."""
    tgt = "" if res.target_return is None else f", target return {res.target_return:g}"
    sub = f"{res.episodes} episodes per point (same seeds and draws for every K'){tgt}; 95% bootstrap CI"
    return _context_figure(res.contexts, res.mean, res.ci_low, res.ci_high, res.agent, res.references,
                           "mean episode return", title, sub, res.trained_context, res.receptive_field)


def context_accuracy_figure(res, title: str) -> go.Figure:
    """analysis.behaviour.context.ContextAccuracy: action accuracy (or MSE) on logged steps vs K'."""
    y = "action accuracy (argmax = logged)" if res.metric == "accuracy" else "action MSE (in [-1, 1])"
    sub = f"{res.n_steps} logged steps, 95% bootstrap CI"
    fig = _context_figure(res.contexts, res.value, res.ci_low, res.ci_high, res.agent, res.references, y, title, sub,
                          res.trained_context, res.receptive_field)
    if res.metric == "accuracy":
        fig.update_yaxes(tickformat=".0%")
    return fig
