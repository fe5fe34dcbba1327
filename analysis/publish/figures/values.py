"""Value figures over one logged episode (analysis.interp.values.ValueTrace): Q(s, ·) as a heatmap with the logged and
greedy actions marked, V(s) and Q(s, a_logged) beside the return-to-go the episode really earned, and the advantage
of the logged action per step."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .labels import readable
from .style import PALETTE, SEQUENTIAL, TEMPLATE
from .text import plain

V_COLOUR, Q_COLOUR, RETURN_COLOUR, TRUTH_COLOUR = PALETTE[0], PALETTE[1], PALETTE[3], PALETTE[7]
HEAD_COLOUR = PALETTE[2]   # a DT's value head: apart from a value agent's V(s) when both are in one figure
AGREE, DISAGREE = PALETTE[0], PALETTE[3]   # blue / vermillion: apart under the common colour-vision deficiencies
LONG_EPISODE = 120   # steps past which the Q map marks only where the logged action is not the greedy one
LEGEND = dict(orientation="h", x=0, y=-0.22, xanchor="left", yanchor="top")


def _gamma(trace) -> str:
    return "undiscounted" if trace.discount == 1 else f"discounted, γ = {trace.discount:g}"


def _truth_name(trace) -> str:
    return "return-to-go (logged rewards)" if trace.discount == 1 else f"discounted return-to-go (γ = {trace.discount:g})"


def q_heatmap(trace, title: str) -> go.Figure:
    """Q(s, a) for every action (rows) at every step (columns), viridis; the logged action as an open white circle, the
    agent's greedy action as a black cross on a white outline (apart by shape as well as colour)."""
    names = [readable(plain(n)) for n in trace.action_names]
    A = len(names)
    fig = go.Figure(go.Heatmap(
        z=trace.q.T, x=trace.steps, y=names, colorscale=SEQUENTIAL,
        colorbar=dict(title=dict(text="Q(s, a)<br>(return units)", side="right"), thickness=14),
        hovertemplate="step %{x}<br>%{y}<br>Q %{z:.4g}<extra></extra>"))
    # white circles and white-edged black crosses show on every viridis cell; the subtitle names them (a legend would
    # draw a white circle on white, and a stand-in trace would be subtracted in compare mode's B − A panel)
    T = len(trace.steps)
    # a long episode's cells are a pixel or two wide: marks on every step overprint, so only the steps where the
    # logged action is not the greedy one are marked there (the news), small
    marked = np.ones(T, bool) if T <= LONG_EPISODE else ~trace.agrees
    shrink = min(1.0, 24 / max(T, 1))   # cells narrow with the episode (540 px on a page): so do the marks
    for name, acts, marker in (
            ("logged action", trace.logged, dict(symbol="circle-open", size=max(4, 14 * shrink), color="white",
                                                 line=dict(width=max(1.0, 2.5 * shrink)))),
            ("greedy action", trace.greedy, dict(symbol="x", size=max(4, 11 * shrink), color="black",
                                                 line=dict(width=max(0.5, 1.2 * shrink), color="white")))):
        fig.add_trace(go.Scatter(x=trace.steps[marked], y=[names[a] for a in acts[marked]], mode="markers", name=name,
                                 marker=marker, showlegend=False,
                                 hovertemplate=f"step %{{x}}<br>{name}: %{{y}}<extra></extra>"))
    agree = float(np.mean(trace.agrees)) if T else float("nan")
    where = "" if T <= LONG_EPISODE else ", marked where they differ"
    sub = (f"circles: the logged action; crosses: the greedy action (the same at {agree:.0%} of {T} steps{where}); "
           f"Q in return units, γ = {trace.discount:g}")
    fig.update_layout(template=TEMPLATE, title=dict(text=f"{title}<br><sup>{sub}</sup>"),
                      xaxis_title="step of the episode", yaxis_title="action", height=max(300, 48 * A + 180))
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=names, showgrid=False)
    fig.update_xaxes(showgrid=False)
    return fig


def value_lines(trace, title: str) -> go.Figure:
    """The agent's values at every step beside what the episode really returned from there (black, dotted): a value
    agent's V(s) and Q(s, a_logged); a Decision Transformer's value head (return-to-go hidden) and its predicted
    R(t+1). All in raw return units, so two agents' panels share one axis."""
    fig = go.Figure()
    x = trace.steps
    if trace.has_q:
        lines = [("V(s)", trace.v, V_COLOUR, "solid"), ("Q(s, logged action)", trace.q_taken, Q_COLOUR, "dash")]
    else:
        lines = [("value head (return-to-go hidden)", trace.v, HEAD_COLOUR, "solid")]
        if trace.return_pred is not None:
            lines.append(("predicted R(t+1)", trace.return_pred, RETURN_COLOUR, "dash"))
    for name, y, colour, dash in lines:
        fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines", line=dict(color=colour, width=2.2, dash=dash),
                                 hovertemplate=f"{name}<br>step %{{x}}<br>%{{y:.4g}}<extra></extra>"))
    truth = _truth_name(trace)
    fig.add_trace(go.Scatter(x=x, y=trace.truth, name=truth, mode="lines",
                             line=dict(color=TRUTH_COLOUR, width=1.6, dash="dot"),
                             hovertemplate=f"{truth}<br>step %{{x}}<br>%{{y:.4g}}<extra></extra>"))
    err = float(np.mean(np.abs(trace.v - trace.truth))) if len(x) else float("nan")
    what = "V(s)" if trace.has_q else "value head"
    # short: on a page a compared panel's subtitle is wrapped for 540 px while its header stays over one line of it
    sub = f"{what}: mean |error| {err:.3g}"   # the error against the return-to-go (dotted)
    if trace.truncated:
        sub += "; the episode was cut by a time limit, so the last steps' return-to-go misses what came after"
    fig.update_layout(template=TEMPLATE, title=dict(text=f"{title}<br><sup>{sub}</sup>"),
                      xaxis_title="step of the episode", yaxis_title="return (raw units)", height=440,
                      legend=LEGEND, margin=dict(b=130))
    return fig


def advantage_bars(trace, title: str) -> go.Figure:
    """Q(s, a_logged) − V(s) per step: blue where the logged action is the agent's greedy one, vermillion where it is
    not. For V = max_a Q every bar is ≤ 0 and the greedy steps' bars are 0."""
    adv, agrees = trace.advantage, trace.agrees
    fig = go.Figure()
    for name, keep, colour in (("logged = greedy", agrees, AGREE), ("logged ≠ greedy", ~agrees, DISAGREE)):
        fig.add_trace(go.Bar(x=trace.steps[keep], y=adv[keep], name=name, marker_color=colour, marker_line_width=0,
                             legendgroup=name, hovertemplate=f"step %{{x}}<br>advantage %{{y:.4g}}<br>{name}<extra></extra>"))
    # a greedy step's bar is 0 tall when V = max Q: a mark at its tip shows it is there
    fig.add_trace(go.Scatter(x=trace.steps[agrees], y=adv[agrees], mode="markers", name="logged = greedy",
                             legendgroup="logged = greedy", showlegend=False,
                             marker=dict(symbol="diamond", size=max(3.0, 8 * min(1.0, 40 / max(len(adv), 1))),
                                         color=AGREE),
                             hovertemplate="step %{x}<br>advantage %{y:.4g}<br>logged = greedy<extra></extra>"))
    worst = int(trace.steps[np.argmin(adv)]) if len(adv) else 0
    sub = (f"the logged action is worse than the agent's own by {-float(np.min(adv)):.3g} at worst (step {worst})"
           if len(adv) and np.min(adv) < 0 else "the logged action is never worse than the agent's value")
    if trace.greedy is not None and trace.greedy.ndim == 2:   # continuous: "greedy" within a tolerance
        sub += f"; logged = greedy: every dimension within {trace.agree_tol:g} of the agent's action, in [−1, 1] units"
    fig.update_layout(template=TEMPLATE, title=dict(text=f"{title}<br><sup>{sub}</sup>"), barmode="overlay",
                      bargap=0.1, xaxis_title="step of the episode",
                      yaxis_title="advantage Q(s, a) − V(s)<br>(return units)", height=420, legend=LEGEND,
                      margin=dict(b=120))
    fig.add_hline(y=0, line=dict(color="#444", width=1))
    return fig
