"""Spatial credit figures: the observation the agent saw at each step of a window (MiniGrid grids as coloured cells,
as the Dataset page's frames; an Atari stack's newest frame) with the credit map laid over it translucently, and a last
panel with the map summed over the window (drawn over the current step's observation)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .dataset import CELL_PX, frames_rgb, is_minigrid
from .labels import named_actions, top_margin
from .style import TEMPLATE
from .text import plain

_METHOD_NAMES = {"ig": "Integrated gradients", "saliency": "Saliency"}
POSITIVE, NEGATIVE = np.array([255, 40, 0], float), np.array([0, 120, 255], float)   # credit for / against
MAX_ALPHA = 0.85
PER_ROW = 8


def _codes(obs: np.ndarray) -> np.ndarray:
    """MiniGrid's one-hot view (11 objects, 6 colours, 3 states = 20 values a cell) back to its 3 codes per cell."""
    if obs.ndim == 4 and obs.shape[-1] == 20:
        return np.stack([obs[..., :11].argmax(-1), obs[..., 11:17].argmax(-1), obs[..., 17:].argmax(-1)],
                        -1).astype(np.uint8)
    return obs


def _frame_maps(res, frame: int | None) -> np.ndarray:
    """[L + 1, H, W]: each step's map (a frame stack's frames summed, or one frame) and the window's sum last."""
    maps = res.maps.sum(1) if frame is None else res.maps[:, frame]
    return np.concatenate([maps, maps[res.mask].sum(0, keepdims=True)], 0)


SCALES = {"window": "one scale for the window's steps", "step": "each step on its own scale"}


def _muted(pics: np.ndarray) -> np.ndarray:
    """The pictures with 70% of their colour taken out and dimmed: red / blue credit stays readable over MiniGrid's
    red and blue cells (over the full colours the overlay could not be told from the objects)."""
    grey = pics @ np.array([0.299, 0.587, 0.114])
    return (0.3 * pics + 0.7 * grey[..., None]) * 0.8


def overlay_pictures(res, frame: int | None = None, scale: str = "window") -> np.ndarray:
    """[L + 1, H', W', 3] uint8: each step's picture (muted) with its map blended in, alpha growing with |credit| on one
    scale for the window's steps (scale="window") or each step's own (scale="step"); the window's sum on its own scale
    over the current step's picture last."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}.")
    obs = _codes(np.asarray(res.observations))
    grid = res.layout == "cells"
    pics = _muted(frames_rgb(obs, grid=grid).astype(float))
    pics = np.concatenate([pics, pics[-1:]], 0)
    maps = _frame_maps(res, frame)
    if grid and is_minigrid(obs):
        maps = maps.transpose(0, 2, 1)   # MiniGrid's image[x, y], drawn as frames_rgb draws it
    scale_h, scale_w = pics.shape[1] // maps.shape[1], pics.shape[2] // maps.shape[2]
    big = np.repeat(np.repeat(maps, scale_h, 1), scale_w, 2)
    if scale == "window":
        top = np.concatenate([np.full(len(big) - 1, np.abs(big[:-1]).max()), [np.abs(big[-1]).max()]])
    else:
        top = np.abs(big).reshape(len(big), -1).max(1)
    norm = big / np.where(top > 0, top, 1.0)[:, None, None]
    alpha = (MAX_ALPHA * np.sqrt(np.abs(norm)))[..., None]   # sqrt: weak credit stays visible beside the strongest
    colour = np.where(norm[..., None] >= 0, POSITIVE, NEGATIVE)
    out = pics * (1 - alpha) + colour * alpha
    return np.where(alpha > 0, out, pics).round().clip(0, 255).astype(np.uint8)


def spatial_strip(res, data: str = "", action_names: list[str] | None = None, frame: int | None = None,
                  scale: str = "window") -> go.Figure:
    """One panel per step of the window (padding left out) and a last panel with the window's sum."""
    pics = overlay_pictures(res, frame, scale)
    real = np.flatnonzero(res.mask)
    keep = np.concatenate([real, [len(pics) - 1]])
    pics = pics[keep]
    totals = res.totals
    # short: eight to a row must fit a page column of ~850 px without wrapping (t=12 −3 steps, then its total)
    labels = [f"t={int(res.window_steps[i])} (−{int(res.step - res.window_steps[i])})<br>Σ {totals[i]:.2g}"
              if res.window_steps[i] != res.step else f"t={res.step} (now)<br>Σ {totals[i]:.2g}" for i in real] \
        + ["window sum"]
    n = len(pics)
    cols = min(PER_ROW, n)
    rows = -(-n // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=labels, horizontal_spacing=0.01,
                        vertical_spacing=0.25 / rows)
    for i, pic in enumerate(pics):
        fig.add_trace(go.Image(z=pic, hovertemplate="x %{x}, y %{y}<extra></extra>"), row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    method = plain(_METHOD_NAMES.get(res.method, res.method))
    what = plain(named_actions(res.target_label, action_names))
    where = {"cells": "grid cell (channels summed)", "pixels": "pixel",
             "frames": "pixel, the stack's 4 frames summed" if frame is None else f"pixel of frame {frame + 1} of 4"}[res.layout]
    sub = [f"episode {res.episode}, step {res.step}" + (f" of {data}" if data else ""), f"credit per {where}",
           "Σ: a step's total"]
    if res.delta is not None:
        sub.append(f"IG δ = {res.delta:.1e} for f(x) − f(baseline) = {res.output - res.baseline_output:.3g}, "
                   f"baseline {plain(res.baseline)}")
    colours = "red: for the output, blue: against it" if res.method == "ig" else "red: |∂f/∂x|"
    title = (f"{method} on the observations — {what}<br><sup>{' · '.join(sub)}<br>{colours}; opacity grows with "
             f"|credit|, {SCALES[scale]} (the sum on its own)</sup>")
    width = min(1600, max(600, cols * 170))
    cell_h = int((width - 20) / cols * pics.shape[1] / pics.shape[2])
    fig.update_layout(template=TEMPLATE, title=title, width=width, height=rows * (cell_h + 50) + top_margin(title) + 40,
                      margin=dict(t=top_margin(title) + 30, l=10, r=10, b=10))
    for a in fig.layout.annotations:
        a.font = dict(size=11)
    return fig
