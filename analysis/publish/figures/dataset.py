"""Dataset figures: returns histogram, one episode's rewards / return-to-go and signals."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .labels import add_note, constant, constant_note, readable, top_margin
from .style import PALETTE, TEMPLATE
from .text import plain


def returns_histogram(returns: np.ndarray, title: str, bins: int = 30) -> go.Figure:
    """Distribution of episode returns: return conditioning is only learnable where this is spread."""
    returns = np.asarray(returns, dtype=float)
    fig = go.Figure(go.Histogram(x=returns, nbinsx=bins, marker=dict(color=PALETTE[0], line=dict(color="white", width=1)),
                                 hovertemplate="return %{x}<br>%{y} episodes<extra></extra>"))
    fig.add_vline(x=float(returns.mean()), line=dict(color=PALETTE[3], dash="dash"),
                  annotation_text=f"mean {returns.mean():.4g}", annotation_position="top")
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title="episode return", yaxis_title="episodes",
                      bargap=0.02, height=340, showlegend=False)
    return fig


def episode_timeline(rewards: np.ndarray, returns_to_go: np.ndarray, title: str) -> go.Figure:
    """Reward per step and return-to-go over one episode. A reward that never changes (CartPole's 1 at every step,
    a failed Key-to-Door episode's 0) is a line under the title, not a block of bars hiding the return-to-go."""
    t = np.arange(len(rewards))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t, y=returns_to_go, name="return-to-go", line=dict(color=PALETTE[0], width=2)))
    flat = constant(rewards)
    if flat is None:
        fig.add_trace(go.Bar(x=t, y=rewards, name="reward", marker_color=PALETTE[1], yaxis="y2", opacity=0.7))
        fig.update_layout(yaxis2=dict(title="reward", overlaying="y", side="right", showgrid=False),
                          legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))
    else:
        title = add_note(title, constant_note('reward', flat))
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title="step", yaxis_title="return-to-go",
                      height=340, showlegend=flat is None, margin=dict(t=top_margin(title)))
    return fig


def episode_signals(values: np.ndarray, names: list[str], title: str, y_title: str, discrete_labels: list[str] | None = None) -> go.Figure:
    """One line per feature over an episode (observations or actions); discrete actions as steps."""
    values = np.asarray(values)
    values = values.reshape(len(values), -1)
    t = np.arange(len(values))
    fig = go.Figure()
    for j, name in enumerate(names):
        fig.add_trace(go.Scatter(x=t, y=values[:, j], name=plain(name), mode="lines",
                                 line=dict(color=PALETTE[j % len(PALETTE)], width=2,
                                           shape="hv" if discrete_labels is not None else "linear")))
    # a few features fit in a row above the plot; more go in a column at the right
    legend = dict(orientation="h", y=1.12, x=1, xanchor="right") if len(names) <= 4 else dict(orientation="v")
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title="step", yaxis_title=y_title, height=340,
                      legend=legend, showlegend=len(names) > 1)
    if discrete_labels is not None:
        fig.update_yaxes(tickmode="array", tickvals=list(range(len(discrete_labels))),
                         ticktext=[plain(readable(x)) for x in discrete_labels])
    return fig


# MiniGrid's encoding of a grid cell (minigrid.core.constants): [object index, colour index, state]
GRID_OBJECTS = {0: "unseen", 1: "empty", 2: "wall", 3: "floor", 4: "door", 5: "key", 6: "ball", 7: "box", 8: "goal",
                9: "lava", 10: "agent"}
GRID_COLOURS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (112, 39, 195), (255, 255, 0), (100, 100, 100)], np.uint8)
CELL_PX = 14   # a grid cell drawn as a 14 px square with a 1 px dark border: cells stay visible at strip size
MAX_STRIP = 16


def is_minigrid(frames: np.ndarray) -> bool:
    """[T, H, W, 3] integer grids whose channels fit MiniGrid's object / colour / state indices."""
    return (frames.ndim == 4 and frames.shape[-1] == 3 and frames.dtype.kind in "iu" and frames.size > 0
            and int(frames[..., 0].max()) <= 10 and int(frames[..., 1].max()) <= 5 and int(frames[..., 2].max()) <= 2)


def frames_rgb(frames: np.ndarray, grid: bool) -> np.ndarray:
    """[T, H', W', 3] uint8 pictures of observations [T, *obs_shape]: MiniGrid grids as coloured cells (unseen black,
    empty dark, each object in its colour, lava orange; the agent's own cell, image[view // 2, view - 1], at the bottom
    centre as MiniGrid draws its partial view); other grids and images in grey levels (the newest frame of a
    frame stack [S, H, W]; channels 1 or 4 as grey, 3 as RGB), float images scaled to the strip's own min..max."""
    frames = np.asarray(frames)
    if grid and is_minigrid(frames):
        frames = frames.transpose(0, 2, 1, 3)   # MiniGrid indexes image[x, y]: drawn with x to the right, y down
        obj, col = frames[..., 0].astype(int), frames[..., 1].astype(int)
        rgb = GRID_COLOURS[np.clip(col, 0, len(GRID_COLOURS) - 1)].copy()
        rgb[obj == 0] = (0, 0, 0)
        rgb[obj == 1] = (30, 30, 30)
        rgb[obj == 9] = (255, 128, 0)
        return _cells(rgb)
    if frames.ndim == 4 and frames.shape[-1] not in (1, 3, 4):
        frames = frames[:, -1]                # a frame stack: its newest frame
    elif frames.ndim == 4 and frames.shape[-1] in (1, 4):
        frames = frames[..., -1]
    if frames.dtype != np.uint8:
        lo, hi = float(frames.min()), float(frames.max())
        frames = ((frames - lo) / (hi - lo if hi > lo else 1.0) * 255).round().astype(np.uint8)
    rgb = frames if frames.ndim == 4 else np.repeat(frames[..., None], 3, axis=-1)
    return _cells(rgb) if grid else rgb


def _cells(rgb: np.ndarray) -> np.ndarray:
    big = np.repeat(np.repeat(rgb, CELL_PX, axis=1), CELL_PX, axis=2)
    big[:, ::CELL_PX, :] = 20
    big[:, :, ::CELL_PX] = 20
    return big


def episode_frames(pictures: np.ndarray, labels: list[str], title: str) -> go.Figure:
    """A strip of pictures [T, H, W, 3] uint8, one per chosen step, each under its label (markup, built by the caller)."""
    n = len(pictures)
    fig = make_subplots(rows=1, cols=n, subplot_titles=labels, horizontal_spacing=0.01)
    for i, pic in enumerate(pictures):
        fig.add_trace(go.Image(z=pic, hovertemplate="x %{x}, y %{y}<extra></extra>"), row=1, col=i + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    width = max(400, min(1600, n * 160))
    fig.update_layout(template=TEMPLATE, title=title, height=int(width / n * pictures.shape[1] / pictures.shape[2]) + 120,
                      width=width, margin=dict(t=top_margin(title) + 20, l=10, r=10, b=10))
    for a in fig.layout.annotations:
        a.font = dict(size=11)
    return fig
