"""Attention figures: one window's maps, shares by token type and steps back, a whole episode, TT dimensions."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .labels import add_note, check_scale, constant, constant_note, data_cap, scale_title, top_margin
from .style import PALETTE, SEQUENTIAL, TEMPLATE, TOKEN_COLOURS
from .text import plain

_TYPES = list(TOKEN_COLOURS)


def _title(main: str, where: str) -> str:
    """The figure's claim on the first line, where it was measured (episode, step) as a subtitle."""
    where = where.strip().lstrip("—").strip()
    return f"{main}<br><sup>{where}</sup>" if where else main


def _head_label(head) -> str:
    return "heads averaged" if head is None else f"head {head}"


def attention_map(weights: np.ndarray, labels: list[str], valid: np.ndarray, layer: int, head: int | None,
                  title_suffix: str = "", scale: str = "data", data: str = "") -> go.Figure:
    """Query x key heatmap of one layer (one head, or heads averaged); padded tokens left out. scale "data": the
    colours span 0 to the 99th percentile of the weights on earlier tokens (labels.data_cap: a token's weight on
    itself, 1.0 for the first, does not set the scale; brighter cells drawn at the top colour, the bar says so);
    "fixed": 0 to 1.
    data: the name of the data (figure text, escaped), as plotly's own subtitle line under the title."""
    check_scale(scale)
    w = weights[layer].mean(0) if head is None else weights[layer, head]
    keep = np.flatnonzero(valid)
    w = w[np.ix_(keep, keep)]
    lab = [labels[i] for i in keep]
    # one tick per step, at its state token; the hover names every token
    ticks = [i for i, name in enumerate(lab) if name.startswith("s ")]
    text = [plain(lab[i][2:]) for i in ticks]
    lab = [plain(name) for name in lab]
    # informative: a query's weight on an earlier token (not itself, not a key it cannot see)
    cap = data_cap(w, np.tril(np.ones(w.shape, bool), -1))
    zmax, bar = (1.0, scale_title("weight", scale)) if scale == "fixed" else (cap.zmax, cap.title("weight"))
    fig = go.Figure(go.Heatmap(z=w, colorscale=SEQUENTIAL, zmin=0, zmax=zmax, customdata=np.array(
        [[f"{q} → {k}" for k in lab] for q in lab]), colorbar=dict(title=bar),
        hovertemplate="%{customdata}<br>weight %{z:.3f}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, height=620,
                      title=dict(text=_title(f"Attention, layer {layer + 1} ({_head_label(head)})", title_suffix),
                                 subtitle=dict(text=f"data: {data}" if data else "", font=dict(size=12, color="#555"))),
                      margin=dict(t=90 if data else 60),
                      xaxis_title="key token (attended to): R, s, a of each step", yaxis_title="query token")
    axis = dict(tickmode="array", tickvals=ticks, ticktext=text, showgrid=False)
    fig.update_yaxes(autorange="reversed", **axis)
    fig.update_xaxes(tickangle=-60, **axis)
    return fig


def attention_by_type(shares: np.ndarray, title_suffix: str = "") -> go.Figure:
    """shares [layers, heads, 3] -> grouped bars per layer (heads averaged): where the action token looks."""
    s = shares.mean(1)
    layers = [f"layer {i + 1}" for i in range(len(s))]
    fig = go.Figure([go.Bar(x=layers, y=s[:, k], name=name, marker_color=TOKEN_COLOURS[name],
                            hovertemplate=f"{name}<br>%{{x}}: %{{y:.1%}}<extra></extra>") for k, name in enumerate(_TYPES)])
    fig.update_layout(template=TEMPLATE, barmode="group", height=360, yaxis_tickformat=".0%",
                      title=_title("Where the action token looks, by token type", title_suffix),
                      yaxis_title="share of attention", xaxis_title="",
                      legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))
    return fig


def attention_by_steps_back(by_step: np.ndarray, title_suffix: str = "") -> go.Figure:
    """by_step [layers, heads, K] -> one line per layer (heads averaged) over steps back."""
    s = by_step.mean(1)
    fig = go.Figure([go.Scatter(x=np.arange(s.shape[1]), y=s[i], mode="lines+markers", name=f"layer {i + 1}",
                                line=dict(color=PALETTE[i % len(PALETTE)], width=2)) for i in range(len(s))])
    fig.update_layout(template=TEMPLATE, height=360, yaxis_tickformat=".0%",
                      title=_title("How far back the action token looks", title_suffix),
                      xaxis_title="steps back (0 = current step)", yaxis_title="share of attention",
                      legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))
    return fig


def rollout_bars(row: np.ndarray, labels: list[str], token_type: np.ndarray, valid: np.ndarray,
                 title_suffix: str = "") -> go.Figure:
    """The action token's row of the attention rollout, one bar per token, coloured by token type. Every token is
    labelled (plotly's automatic ticks on a category axis skip every 2nd or 3rd label once they crowd): a tick per
    bar, small and upright, the figure widened for long windows; the hover names the token too."""
    keep = np.flatnonzero(valid)
    names = [plain(labels[i]) for i in keep]
    fig = go.Figure()
    for k, name in enumerate(_TYPES):
        sel = [i for i in keep if token_type[i] == k]
        fig.add_trace(go.Bar(x=[plain(labels[i]) for i in sel], y=row[sel], name=name, marker_color=TOKEN_COLOURS[name],
                             hovertemplate=f"%{{x}} ({name})<br>%{{y:.1%}}<extra></extra>"))
    size = 11 if len(names) <= 45 else 9
    fig.update_layout(template=TEMPLATE, height=380, yaxis_tickformat=".0%", barmode="overlay",
                      title=_title("Attention rollout across layers: the action token's effective attention", title_suffix),
                      xaxis_title="token", yaxis_title="rolled-out attention",
                      xaxis=dict(categoryorder="array", categoryarray=names, tickmode="array", tickvals=names,
                                 ticktext=names, tickangle=-90, tickfont=dict(size=size), title_standoff=4),
                      margin=dict(b=110), legend=dict(orientation="h", y=1.15, x=1, xanchor="right"))
    if len(names) * (size + 3) > 900:   # more ticks than a default-width export holds upright
        fig.update_layout(width=int(200 + len(names) * (size + 3)))
    return fig


def episode_attention_map(summary: np.ndarray, rewards: np.ndarray, title: str, scale: str = "data") -> go.Figure:
    """summary [T, K] weight per step back at every step; the episode's rewards beneath on the same x, unless they
    never change (CartPole's 1 at every step, a failed Key-to-Door episode's 0): then a line under the title says so.
    scale "data": colours span 0 to the 99th percentile of the informative weights (labels.data_cap), "fixed": 0 to 1."""
    check_scale(scale)
    T, K = summary.shape
    flat = constant(rewards)
    # informative: steps that had an earlier step to look at (step 0's weight of 1.0 on itself is forced), on a step
    # the query can see (k <= t)
    t, k = np.indices((T, K))
    cap = data_cap(summary, (t >= 1) & (k <= t))
    zmax, bar = (1.0, scale_title("weight", scale)) if scale == "fixed" else (cap.zmax, cap.title("weight"))
    heat = go.Heatmap(z=summary.T, x=np.arange(T), y=np.arange(K), colorscale=SEQUENTIAL, zmin=0, zmax=zmax,
                      colorbar=dict(title=bar, len=0.75 if flat is None else 1.0,
                                    y=0.62 if flat is None else 0.5),
                      hovertemplate="step %{x}<br>%{y} steps back<br>weight %{z:.3f}<extra></extra>")
    if flat is None:
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.04)
        fig.add_trace(heat, 1, 1)
        fig.add_trace(go.Bar(x=np.arange(T), y=rewards, marker_color=PALETTE[1], name="reward", showlegend=False), 2, 1)
        fig.update_yaxes(title_text="steps back", row=1, col=1, showgrid=False)
        fig.update_yaxes(title_text="reward", row=2, col=1)
        fig.update_xaxes(title_text="episode step", row=2, col=1)
    else:
        fig = go.Figure(heat)
        fig.update_yaxes(title_text="steps back", showgrid=False)
        fig.update_xaxes(title_text="episode step")
        title = add_note(title, constant_note('reward', flat))
    fig.update_layout(template=TEMPLATE, height=500 if flat is None else 420, title=title,
                      margin=dict(t=top_margin(title)))
    return fig


def tt_attention_map(weights: np.ndarray, dims: np.ndarray, dim_names: list[str], layer: int, head: int | None,
                     n_windows: int, data: str = "") -> go.Figure:
    """A TT's token x token attention (averaged over windows); lines mark transition boundaries, so
    'striated' heads show as vertical stripes of one dimension and 'Markovian' ones as a diagonal band."""
    w = weights[layer].mean(0) if head is None else weights[layer, head]
    T = w.shape[0]
    D = len(dim_names)
    labels = [f"{plain(dim_names[d])} · {i // D}" for i, d in enumerate(dims)]
    fig = go.Figure(go.Heatmap(z=np.sqrt(w), colorscale=SEQUENTIAL, customdata=w, colorbar=dict(title="√weight"),
                               hovertemplate="query %{y}<br>key %{x}<br>weight %{customdata:.3f}<extra></extra>",
                               x=labels, y=labels))
    for b in range(D, T, D):
        for axis in ("x", "y"):
            fig.add_shape(type="line", xref="x", yref="y", line=dict(color="white", width=0.6),
                          **({"x0": b - 0.5, "x1": b - 0.5, "y0": -0.5, "y1": T - 0.5} if axis == "x"
                             else {"y0": b - 0.5, "y1": b - 0.5, "x0": -0.5, "x1": T - 0.5}))
    fig.update_layout(template=TEMPLATE, height=600,
                      title=_title(f"Trajectory Transformer attention, layer {layer + 1} ({_head_label(head)})",
                                   f"mean of {n_windows} windows" + (f" of {data}" if data else "")),
                      xaxis_title="key token (dimension · transition)", yaxis_title="query token")
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, autorange="reversed")
    return fig


def tt_dimension_map(by_dim: np.ndarray, dim_names: list[str], layer: int, data: str = "") -> go.Figure:
    """by_dim [D, D]: how much each query dimension attends to each key dimension."""
    names = [plain(n) for n in dim_names]
    fig = go.Figure(go.Heatmap(z=by_dim, x=names, y=names, colorscale=SEQUENTIAL, zmin=0,
                               colorbar=dict(title=scale_title("weight", "data")), texttemplate="%{z:.2f}",
                               hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, height=460,
                      title=_title(f"Attention by dimension, layer {layer + 1} (heads averaged)", data),
                      xaxis_title="key dimension", yaxis_title="query dimension")
    fig.update_yaxes(autorange="reversed", showgrid=False)
    fig.update_xaxes(showgrid=False)
    return fig
