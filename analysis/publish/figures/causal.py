"""Causal figures: activation patching maps (layer x position, layer x head), direct logit attribution bars and the
logit lens over an episode. They draw analysis/interp/patching.py and analysis/interp/dla.py results; they compute nothing."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .labels import check_scale, named_actions, readable
from .style import DIVERGING, PALETTE, SEQUENTIAL, TEMPLATE
from .text import plain


def _title(main: str, where: str) -> str:
    """The claim on the first line; where it was measured beneath (lines split at "\n")."""
    lines = [w.strip() for w in where.strip().lstrip("—").split("\n") if w.strip()]
    return "<br>".join([main] + [f"<sup>{w}</sup>" for w in lines])


def _where(grid, names=None, data: str = "") -> str:
    of = f" ({data})" if data else ""
    return (f"{plain(grid.description)}{of}\n{plain(named_actions(grid.readout.label, names))}: clean {grid.clean:.4g}, "
            f"corrupted {grid.corrupted:.4g}")


def patching_map(grid, title_suffix: str = "", action_names: list[str] | None = None, data: str = "") -> go.Figure:
    """Normalised effect (patched - corrupted) / (clean - corrupted) per cell, diverging around 0 (1 = the clean
    output restored). Positions: residual points x tokens; heads: layers x (heads, MLP)."""
    z = grid.effect
    m = float(max(1.0, np.nanmax(np.abs(z)) if z.size else 1.0))
    note = np.where(grid.computed, "", "<br>(not run: cannot change the output)")
    rows, columns = [plain(x) for x in grid.row_labels], [plain(x) for x in grid.columns]
    text = np.array([[f"{rows[r]} · {columns[c]}<br>patched {grid.patched[r, c]:.4g}{note[r, c]}"
                      for c in range(z.shape[1])] for r in range(z.shape[0])])
    positions = grid.kind == "positions"
    heat = dict(z=z, x=list(range(z.shape[1])), y=rows, colorscale=DIVERGING, zmid=0, zmin=-m, zmax=m,
                customdata=text, colorbar=dict(title="effect"), xgap=0 if positions else 2, ygap=1 if positions else 2,
                hovertemplate="%{customdata}<br>effect %{z:.3f}<extra></extra>")
    if not positions:
        heat.update(texttemplate="%{z:.2f}")
    fig = go.Figure(go.Heatmap(**heat))
    if positions:
        main = "Activation patching: the residual stream at each layer and position"
        s_cols = [c for c, name in enumerate(grid.columns) if name.startswith("s ")]
        every = max(1, len(s_cols) // 20)
        ticks = s_cols[::-1][::every][::-1]
        fig.update_xaxes(tickmode="array", tickvals=ticks, ticktext=[plain(grid.columns[c][2:]) for c in ticks], tickangle=-60,
                         title_text="patched token (ticks at each step's state token)", title_standoff=6,
                         showgrid=False)
    else:
        main = "Activation patching: each head's and each MLP's output"
        fig.update_xaxes(tickmode="array", tickvals=list(range(z.shape[1])), ticktext=columns, showgrid=False,
                         title_text="patched output (all positions)")
    fig.update_yaxes(autorange="reversed", showgrid=False, title_text="")
    fig.update_layout(template=TEMPLATE, height=max(320, 150 + 55 * z.shape[0]),
                      title=_title(main, title_suffix or _where(grid, action_names, data)), margin=dict(l=190, t=100))
    return fig


def dla_bars(dla, title_suffix: str = "", action_names: list[str] | None = None, data: str = "") -> go.Figure:
    """Each part's contribution (raw units), in the order the model adds them; the parts sum to the output."""
    quantity = plain(named_actions(dla.quantity, action_names))
    v = dla.values * dla.units
    colours = [PALETTE[3] if x >= 0 else PALETTE[0] for x in v]
    fig = go.Figure(go.Bar(x=v, y=[plain(n) for n in dla.names], orientation="h", marker_color=colours,
                           hovertemplate="%{y}<br>%{x:.4g}<extra></extra>"))
    fig.add_vline(x=0, line=dict(color="#444", width=1))
    of = f" of {data}" if data else ""
    where = title_suffix or (f"episode {dla.episode}, step {dla.step}{of} ({dla.steps}-step window); final layer norm's "
                             f"scale frozen at this input\nsum of the parts {dla.total * dla.units:.5g}; the model's output "
                             f"{dla.output * dla.units:.5g}")
    fig.update_layout(template=TEMPLATE, height=max(360, 120 + 24 * len(dla.names)),
                      title=_title(f"Direct logit attribution: what each part writes to the {quantity}", where),
                      xaxis_title=f"contribution to the {quantity}" + (" (raw return units)" if dla.units != 1 else ""),
                      margin=dict(l=130, t=100))
    fig.update_yaxes(autorange="reversed", showgrid=False)
    return fig


def _lens_colour_title(lens, names) -> tuple[str, tuple[float, float]]:
    """What the logit lens' colours show, in words, and the quantity's whole range (the fixed scale)."""
    if lens.output == "action" and lens.discrete:
        which = "the chosen action" if lens.index is None else plain(readable(
            names[lens.index] if names and lens.index < len(names) else f"action {lens.index}"))
        return f"P({which})", (0.0, 1.0)
    if lens.output == "action":
        d = lens.index or 0
        return plain(readable(names[d] if names and d < len(names) else f"action dim {d}")) + " (tanh)", (-1.0, 1.0)
    return ("value prediction" if lens.output == "value" else "predicted R(t+1)") + " (return units)", (None, None)


def logit_lens_map(lens, title_suffix: str = "", action_names: list[str] | None = None, data: str = "",
                   scale: str = "data") -> go.Figure:
    """Steps x residual-stream states: the output head read through the final layer norm from each state; for
    discrete actions, white dots mark the first state from which the top action is the final one. The colour bar
    says what the colours are (a probability, an action, a value); scale "data": they span the values shown,
    "fixed": the quantity's whole range (0-1 for a probability, -1-1 for a tanh action)."""
    check_scale(scale)
    z = lens.shown.T                                            # [rows, steps]
    rows = [plain(r) for r in lens.rows]
    what, (lo, hi) = _lens_colour_title(lens, action_names)
    finite = z[np.isfinite(z)]
    if scale == "fixed" and lo is not None:
        zmin, zmax, note = lo, hi, f"fixed {lo:g}–{hi:g}"
    else:
        zmin, zmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        note = "fitted to the values shown"
    diverging = lens.output == "action" and not lens.discrete
    if diverging:   # around 0: a push one way or the other
        m = max(abs(zmin), abs(zmax), 1e-9)
        zmin, zmax = -m, m
    scale_kw = dict(colorscale=DIVERGING if diverging else SEQUENTIAL, zmin=zmin, zmax=max(zmax, zmin + 1e-9))
    fig = go.Figure(go.Heatmap(z=z, x=lens.steps, y=rows, colorbar=dict(title=f"{what}<br>({note})"), **scale_kw,
                               hovertemplate=f"step %{{x}}<br>%{{y}}<br>{what} %{{z:.4g}}<extra></extra>"))
    decided = lens.decided
    if decided is not None:
        fig.add_trace(go.Scatter(x=lens.steps, y=[rows[d] if d < len(rows) else None for d in decided],
                                 mode="markers", marker=dict(color="white", size=5, line=dict(color="#222", width=0.5)),
                                 name="decided from", hovertemplate="step %{x}: decided from %{y}<extra></extra>"))
    n = len(lens.steps)
    which = f"{n} evenly spaced steps" if lens.sampled else "every step"
    of = f" of {data}" if data else ""
    fig.update_layout(template=TEMPLATE, height=max(320, 170 + 45 * len(lens.rows)), showlegend=decided is not None,
                      title=_title(f"Logit lens: the {plain(named_actions(lens.label, action_names))} read from each "
                                   "layer's residual stream",
                                   title_suffix or f"episode {lens.episode}{of}, {which}; the last row is the model's output"),
                      xaxis_title="episode step", legend=dict(orientation="h", y=1.01, yanchor="bottom", x=1, xanchor="right"),
                      margin=dict(l=120))
    fig.update_yaxes(autorange="reversed", showgrid=False)
    fig.update_xaxes(showgrid=False)
    return fig
