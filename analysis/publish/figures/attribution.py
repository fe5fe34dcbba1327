"""Credit-assignment figures: attribution per timestep x token and per feature of a DT context window,
always beside the same map on a randomized model (Adebayo et al. 2018), on the episode's step axis."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .labels import constant, constant_note, named_actions, readable
from .style import DIVERGING, PALETTE, SEQUENTIAL, TEMPLATE, TOKEN_COLOURS
from .text import plain

_METHOD_NAMES = {"ig": "Integrated gradients", "saliency": "Saliency", "ablation": "Timestep ablation"}
_TOKEN_LABELS = {"return-to-go": "return-to-go", "state": "state", "action": "action"}


def _title(res, what: str, data: str = "", note: str = "", action_names: list[str] | None = None) -> str:
    """data: the name of the data it was computed from (figure text, escaped); note: a last subtitle line;
    action_names: the dataset's, put into the explained output's words."""
    method = plain(_METHOD_NAMES.get(res.method, res.method))
    sub = [f"episode {res.episode}, step {res.step}" + (f" of {data}" if data else "")]
    if res.trained.delta is not None:
        sub.append(f"IG convergence δ = {res.trained.delta:.1e} for f(x) − f(baseline) = "
                   f"{res.trained.output - res.trained.baseline_output:.3g} ({res.n_steps} steps)")
    elif res.method == "ablation":
        sub.append("output change when a whole step is replaced by the baseline")
    base = f"<br>baseline: {plain(res.baseline)}" if res.baseline and res.method != "saliency" else ""
    return (f"{method} — {what}, {plain(named_actions(res.target_label, action_names))}<br><sup>" + " · ".join(sub) + base
            + (f"<br>{note}" if note else "") + "</sup>")


def _rho_title(res) -> str:
    if res.randomized is None:
        return "randomized model (not computed)"
    return f"randomized weights: Spearman ρ = {res.spearman:.2f} with trained"


def _markers(fig, res, rows: list[int], cols: list[int], annotate_row: int = 1) -> None:
    """Dotted lines at named episode steps (Key-to-Door landmarks, the explained step); one label per step."""
    marks: dict[int, list[str]] = {}
    for name, s in list(res.markers.items()) + [("explained step", res.step)]:
        marks.setdefault(int(s), []).append(plain(name))
    lo = int(res.window_steps[res.mask].min())
    colours = [PALETTE[3], PALETTE[4]]
    span = max(res.step - lo + 1, 1)
    prev, lift = None, 0
    for k, (s, names) in enumerate(sorted(marks.items())):
        if s < lo or s > res.step:
            continue
        lift = 15 - lift if prev is not None and (s - prev) / span < 0.25 else 0   # stagger labels that would collide
        prev = s
        colour = PALETTE[7] if s == res.step else colours[k % 2]
        for r in rows:
            for c in cols:
                fig.add_vline(x=s, line=dict(color=colour, dash="dot", width=1.5), row=r, col=c)
        right = s == res.step
        for c in cols:
            fig.add_annotation(x=s, y=1.0, yref="y domain", text=" / ".join(names), showarrow=False, yanchor="bottom",
                               xanchor="right" if right else "left", xshift=-2 if right else 2, yshift=lift,
                               font=dict(size=11, color=colour), row=annotate_row, col=c)


def _lift_column_titles(fig, px: int = 28) -> None:
    for a in fig.layout.annotations:
        if a.text and (a.text == "trained agent" or a.text.startswith("randomized")):
            a.yshift = px
            a.font = dict(size=14)


def attribution_timesteps(res, title: str | None = None, data: str = "", action_names: list[str] | None = None) -> go.Figure:
    """Share of |attribution| per token (R, s, a) and per timestep of the context window, trained model
    beside the randomized one, with the episode's rewards beneath on the same step axis (unless they are one value
    over the steps shown, such as CartPole's 1: then a subtitle line says so and the row is left out).
    data: the name of the data it was computed from (figure text, escaped)."""
    mask = res.mask
    x = res.window_steps[mask]
    ncol = 2 if res.randomized is not None else 1
    maps = [res.trained] + ([res.randomized] if res.randomized is not None else [])
    present = [m for m in _TOKEN_LABELS if m in res.feature_names]
    rows_idx = [list(_TOKEN_LABELS).index(m) for m in present]
    # the reward timeline runs a little past the explained step (a sparse final reward is in view)
    x_end = min(len(res.rewards) - 1, res.step + max(5, len(x) // 4))
    t_all = np.arange(x.min(), x_end + 1)
    flat = constant(res.rewards[t_all])
    nrow = 3 if flat is None else 2
    fig = make_subplots(rows=nrow, cols=ncol, shared_xaxes=True, vertical_spacing=0.1, horizontal_spacing=0.1,
                        row_heights=[0.46, 0.3, 0.24] if nrow == 3 else [0.6, 0.4],
                        column_titles=["trained agent", _rho_title(res)][:ncol])
    zmax = 0.0
    tokens, steps = [], []
    for m in maps:
        tok, per = m.per_token()[mask][:, rows_idx], m.per_step()[mask]
        total = per.sum()
        tokens.append(100 * tok / total if total > 0 else np.zeros_like(tok))
        steps.append(100 * per / total if total > 0 else np.zeros_like(per))
        zmax = max(zmax, float(tokens[-1].max()))
    labels = ["return (hidden)" if m == "return-to-go" and res.target == "value" else _TOKEN_LABELS[m] for m in present]
    n_ctx = max(int(mask.sum()) - 1, 1)
    gap = 1 if len(x) <= 60 else 0
    for c, (tok, per) in enumerate(zip(tokens, steps), start=1):
        fig.add_trace(go.Heatmap(x=x, y=labels, z=tok.T, coloraxis="coloraxis", xgap=gap, ygap=1,
                                 hovertemplate="step %{x}<br>%{y}<br>%{z:.1f}% of |attribution|<extra></extra>"),
                      row=1, col=c)
        colours = [PALETTE[3] if s == res.step else PALETTE[0] for s in x]
        fig.add_trace(go.Bar(x=x, y=per, marker_color=colours, showlegend=False,
                             hovertemplate="step %{x}<br>%{y:.1f}% of |attribution|<extra></extra>"), row=2, col=c)
        ctx_share = per[:-1].sum() / n_ctx if len(per) > 1 else None
        if ctx_share:
            fig.add_hline(y=ctx_share, line=dict(color="#666", dash="dash", width=1), row=2, col=c)
        if flat is None:
            fig.add_trace(go.Bar(x=t_all, y=res.rewards[t_all], marker_color=PALETTE[1], showlegend=False,
                                 hovertemplate="step %{x}<br>reward %{y:.3g}<extra></extra>"), row=3, col=c)
            fig.update_yaxes(title_text="reward" if c == 1 else None, row=3, col=c)
        fig.update_yaxes(title_text="% of |attr.|" if c == 1 else None, row=2, col=c)
        fig.update_xaxes(title_text="episode step", row=nrow, col=c)
        fig.update_yaxes(showticklabels=c == 1, autorange="reversed", row=1, col=c)
        fig.update_xaxes(range=[x.min() - 0.5, x_end + 0.5], row=nrow, col=c)
    _markers(fig, res, rows=list(range(1, nrow + 1)), cols=list(range(1, ncol + 1)))
    _lift_column_titles(fig)
    note = "" if flat is None else constant_note("reward", flat, f"on steps {int(t_all[0])}–{int(t_all[-1])}")
    fig.update_layout(template=TEMPLATE, title=title or _title(res, "share of |attribution| per token and step", data, note,
                                                                 action_names),
                      coloraxis=dict(colorscale=SEQUENTIAL, cmin=0, cmax=zmax or 1,
                                     colorbar=dict(title=dict(text="% of |attr.|", side="right"), len=0.45, y=1.0,
                                                   yanchor="top", thickness=14)),
                      height=720 if nrow == 3 else 620, width=1150 if ncol == 2 else 720,
                      margin=dict(t=195 + (18 if note else 0), l=130, b=120), bargap=0.15)
    bottom = "bottom: the episode's rewards." if flat is None else ""
    fig.add_annotation(x=0, y=-0.21 if nrow == 3 else -0.3, xref="paper", yref="paper", showarrow=False,
                       xanchor="left", font=dict(size=12, color="#555"),
                       text=f"{'middle' if flat is None else 'bottom'}: share of |attribution| per step (red: the "
                            "explained step; dashed: uniform share over the context, explained step excluded). "
                            f"{bottom}".rstrip())
    return fig


def attribution_features(res, title: str | None = None, data: str = "", action_names: list[str] | None = None) -> go.Figure:
    """Signed attribution of every input feature (rows) at every step of the window (columns), each map
    scaled by its largest |attribution|; trained model beside the randomized one."""
    mask = res.mask
    x = res.window_steps[mask]
    maps = [res.trained] + ([res.randomized] if res.randomized is not None else [])
    ncol = len(maps)
    short = {"return-to-go": "R", "state": "s", "action": "a"}
    hidden = " (hidden)" if res.target == "value" else ""
    def feature(m, n):   # an action feature the analysis could only number ("action 1") gets the dataset's name
        return plain(readable(named_actions(n, action_names)) if m == "action" else n)
    ylabels = [f"{short[m]}: {feature(m, n)}" + (hidden if m == "return-to-go" else "") for m in _TOKEN_LABELS
               if m in res.feature_names for n in res.feature_names[m]]
    fig = make_subplots(rows=1, cols=ncol, shared_yaxes=True, horizontal_spacing=0.04,
                        column_titles=["trained agent", _rho_title(res)][:ncol])
    for c, m in enumerate(maps, start=1):
        z = np.concatenate([m.features[k][mask] for k in _TOKEN_LABELS if k in res.feature_names], axis=1).T
        peak = np.abs(z).max()
        z = z / peak if peak > 0 else z
        fig.add_trace(go.Heatmap(x=x, y=ylabels, z=z, coloraxis="coloraxis", xgap=1 if len(x) <= 60 else 0, ygap=1,
                                 hovertemplate="step %{x}<br>%{y}<br>%{z:.2f} of max<extra></extra>"), row=1, col=c)
        fig.update_xaxes(title_text="episode step", row=1, col=c)
    fig.update_yaxes(autorange="reversed")
    _markers(fig, res, rows=[1], cols=list(range(1, ncol + 1)))
    _lift_column_titles(fig)
    fig.update_yaxes(tickfont=dict(size=12), row=1, col=1)
    fig.update_layout(template=TEMPLATE, title=title or _title(res, "signed attribution per feature", data, "", action_names),
                      coloraxis=dict(colorscale=DIVERGING, cmin=-1, cmax=1, cmid=0,
                                     colorbar=dict(title=dict(text="attr. / max |attr.|", side="right"), thickness=14)),
                      height=max(460, 230 + 26 * len(ylabels)), width=1150 if ncol == 2 else 720,
                      margin=dict(t=195, l=170))
    return fig


def key_door_credit_bars(frames: dict, title: str | None = None, explained_at: str = "the first phase-3 step",
                         data: str = "") -> go.Figure:
    """Share over uniform of |attribution| on the key-pickup step, per target, trained vs randomized
    (mean and 95% interval over episodes). frames: target -> KeyDoorCredit.to_frame()."""
    fig = go.Figure()
    targets = list(frames)
    for name, col, colour in (("trained agent", "share_over_uniform", PALETTE[0]),
                              ("randomized weights", "randomized_share_over_uniform", "#999999")):
        means, errs = [], []
        for t in targets:
            v = frames[t][col].to_numpy(float)
            v = v[np.isfinite(v)]
            means.append(v.mean() if len(v) else np.nan)
            errs.append(1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0)
        fig.add_trace(go.Bar(x=[plain(t) for t in targets], y=means, name=name, marker_color=colour,
                             error_y=dict(type="data", array=errs, color="#333", thickness=1.2),
                             hovertemplate="%{x}: %{y:.2f} × uniform<extra>" + name + "</extra>"))
    fig.add_hline(y=1.0, line=dict(color="#444", dash="dash", width=1))
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="uniform share",
                             line=dict(color="#444", dash="dash", width=1)))
    n = min(len(f) for f in frames.values()) if frames else 0
    any_frame = next(iter(frames.values()))
    method = _METHOD_NAMES.get(str(any_frame["method"].iloc[0]), "") if len(any_frame) else ""
    sub = f"{method}, explained at {explained_at}; mean and 95% CI over {n} episodes" + (f" of {data}" if data else "") + \
        " (current step excluded)"
    fig.update_layout(template=TEMPLATE, barmode="group", height=460, width=780,
                      title=title or f"Key-to-Door: credit on the key-pickup step<br><sup>{sub}</sup>",
                      xaxis_title="explained output", yaxis_title="share of |attribution| / uniform",
                      margin=dict(t=130), legend=dict(orientation="h", y=1.0, x=1.0, xanchor="right", yanchor="bottom"))
    return fig
