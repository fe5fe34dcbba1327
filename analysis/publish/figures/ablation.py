"""Ablation and TT patching figures: intact vs ablated bars with 95% CI whiskers (a Decision Transformer's
action prediction and return), a TT's change in prediction error per dimension, and a TT's layer x head
patching map."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import DIVERGING, PALETTE, TEMPLATE
from .text import plain

INTACT, ABLATED = PALETTE[0], PALETTE[3]


def _fmt(e) -> str:
    return f"{e.mean:+.4g} [{e.ci_low:+.4g}, {e.ci_high:+.4g}]"


def ablation_figure(res, title: str) -> go.Figure:
    """analysis.interp.ablation.AblationResult: one panel per measure (action prediction on data; return in the
    environment when it ran), intact and ablated bars with 95% bootstrap CI whiskers; the paired difference
    (ablated - intact) with its CI above each panel."""
    panels = []
    if res.data is not None:
        d = res.data
        y = "action accuracy (argmax = logged)" if d.metric == "accuracy" else "action MSE (in [-1, 1])"
        panels.append((y, d.intact, d.ablated, d.difference, f"{d.n_steps} logged steps"))
    if res.env is not None:
        e = res.env
        panels.append(("mean episode return", e.intact, e.ablated, e.difference,
                       f"{e.episodes} episodes, target {e.target_return:g}"))
    fig = make_subplots(rows=1, cols=max(1, len(panels)), horizontal_spacing=0.16,
                        subplot_titles=[f"{p[4]}<br>ablated − intact: {_fmt(p[3])}" for p in panels] or [""])
    for c, (y, intact, ablated, _, _) in enumerate(panels, start=1):
        for label, est, colour in (("intact", intact, INTACT), ("ablated", ablated, ABLATED)):
            fig.add_trace(go.Bar(x=[label], y=[est.mean], marker_color=colour, name=label, showlegend=False, width=0.55,
                                 error_y=dict(type="data", symmetric=False, array=[est.ci_high - est.mean],
                                              arrayminus=[est.mean - est.ci_low], color="#333", thickness=1.4, width=8),
                                 hovertemplate=f"{label}<br>%{{y:.4g}} [{est.ci_low:.4g}, {est.ci_high:.4g}]<extra></extra>"),
                          row=1, col=c)
        fig.update_yaxes(title_text=y, row=1, col=c)
        if y.startswith("action accuracy"):
            fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=1, col=c)
    sub = (f"{plain(' '.join(res.components))} {plain(res.mode)}-ablated; 95% bootstrap CIs; the same logged steps, reset seeds and "
           "action draws on both sides")
    if res.note:
        sub += f"; {plain(res.note)}"
    fig.update_layout(template=TEMPLATE, title=dict(text=f"{title}<br><sup>{sub}</sup>"), height=480,
                      margin=dict(t=130), bargap=0.35)
    fig.update_annotations(font=dict(size=12))
    return fig


def tt_ablation_figure(res, title: str) -> go.Figure:
    """analysis.interp.tt_causal.TTAblation: per predicted dimension, the change of the mean absolute error under the
    ablation as a share of the intact error, with the paired difference's 95% CI; absolute numbers on hover
    (and in the CSV)."""
    intact = np.array([e.mean for e in res.intact])
    base = np.where(intact > 0, intact, np.nan)
    diff = np.array([e.mean for e in res.difference])
    lo = np.array([e.ci_low for e in res.difference])
    hi = np.array([e.ci_high for e in res.difference])
    ablated = np.array([e.mean for e in res.ablated])
    colours = [ABLATED if v > 0 else INTACT for v in diff]
    fig = go.Figure(go.Bar(
        x=[plain(d) for d in res.dims], y=diff / base, marker_color=colours, width=0.6,
        error_y=dict(type="data", symmetric=False, array=(hi - diff) / base, arrayminus=(diff - lo) / base, color="#333",
                     thickness=1.4, width=8),
        customdata=np.stack([intact, ablated, diff, lo, hi, res.changed], 1),
        hovertemplate=("%{x}<br>error intact %{customdata[0]:.4g}, ablated %{customdata[1]:.4g}<br>change %{customdata[2]:+.4g} "
                       "[%{customdata[3]:+.4g}, %{customdata[4]:+.4g}]<br>predictions changed: %{customdata[5]:.1%}<extra></extra>")))
    fig.add_hline(y=0, line=dict(color="#444", width=1))
    floor = "" if res.obs_quantization_floor is None else f"; quantization floor {res.obs_quantization_floor:.3g} (state L2)"
    sub = (f"{plain(' '.join(res.components))} {plain(res.mode)}-ablated; mean |error| (raw units) over {res.n_windows} windows of "
           f"{res.window} transitions<br>teacher-forced, {plain(res.decoding)} decoding; 95% paired bootstrap CI{floor}")
    fig.update_layout(template=TEMPLATE, title=dict(text=f"{title}<br><sup>{sub}</sup>"), height=480,
                      yaxis_title="change in |error| (share of intact)", xaxis_title="predicted dimension",
                      margin=dict(t=120))
    fig.update_yaxes(tickformat="+.0%")
    return fig


def tt_patching_figure(res, target: str, title: str) -> go.Figure:
    """analysis.interp.tt_causal.TTPatching: layer x (heads, MLP) map of the normalised effect on `target` of patching
    that component's output from the clean window into the corrupted one (1: the clean prediction, 0: the
    corrupted one), diverging around 0."""
    z = res.effect[target]
    finite = z[np.isfinite(z)]
    m = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    layers = [f"L{i}" for i in range(res.n_layer)]
    fig = go.Figure(go.Heatmap(z=z, x=[plain(c) for c in res.columns], y=layers, colorscale=DIVERGING, zmid=0, zmin=-m, zmax=m,
                               texttemplate="%{z:.2f}", colorbar=dict(title="effect"),
                               hovertemplate="%{y} %{x}<br>normalised effect %{z:.3f}<extra></extra>"))

    def show(v):
        return ", ".join(f"{x:.3g}" for x in np.atleast_1d(v))
    dims = plain(", ".join(res.dims[target]))
    sub = (f"{plain(res.description)}<br>predicted {plain(target)} ({dims}): clean {show(res.clean[target])}, corrupted "
           f"{show(res.corrupted[target])}<br>1 = the clean prediction, 0 = the corrupted one; {plain(res.decoding)} decoding, "
           "every position patched")
    if res.note:
        sub += f"; {plain(res.note)}"
    fig.update_layout(template=TEMPLATE, title=dict(text=f"{title}<br><sup>{sub}</sup>"), height=320 + 70 * res.n_layer,
                      xaxis_title="component patched from clean (head output, MLP output)", yaxis_title="layer",
                      margin=dict(t=150))
    fig.update_yaxes(autorange="reversed", showgrid=False)
    fig.update_xaxes(showgrid=False)
    return fig
