"""Spatial credit figures: the observation the agent saw at each step of a window (MiniGrid grids as coloured cells,
as the Dataset page's frames; an Atari stack's newest frame) with the credit map laid over it translucently, and a last
panel with the map summed over the window (drawn over the current step's observation)."""
from __future__ import annotations

from dataclasses import dataclass

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
    pics, maps = _pictures_and_maps(res, _frame_maps(res, frame))
    pics = np.concatenate([pics, pics[-1:]], 0)
    if scale == "window":
        top = np.concatenate([np.full(len(maps) - 1, np.abs(maps[:-1]).max()), [np.abs(maps[-1]).max()]])
    else:
        top = np.abs(maps).reshape(len(maps), -1).max(1)
    return _blend(pics, maps, top)


def _pictures_and_maps(res, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The window's pictures [L, H', W', 3] (muted, float) and `maps` [N, H, W] laid out as the pictures draw them."""
    obs = _codes(np.asarray(res.observations))
    grid = res.layout == "cells"
    pics = _muted(frames_rgb(obs, grid=grid).astype(float))
    if grid and is_minigrid(obs):
        maps = maps.transpose(0, 2, 1)   # MiniGrid's image[x, y], drawn as frames_rgb draws it
    return pics, maps


def _blend(pics: np.ndarray, maps: np.ndarray, top: np.ndarray) -> np.ndarray:
    """pics [N, H', W', 3] with maps [N, H, W] blended in: alpha = MAX_ALPHA * sqrt(|map| / top) (capped at 1)."""
    scale_h, scale_w = pics.shape[1] // maps.shape[1], pics.shape[2] // maps.shape[2]
    big = np.repeat(np.repeat(maps, scale_h, 1), scale_w, 2)
    norm = np.clip(big / np.where(top > 0, top, 1.0)[:, None, None], -1.0, 1.0)
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


# ---- compare mode: two agents on the same observation ------------------------------------------------------------
FILL = 0.25   # B − A is drawn when each agent's strongest credit is at least this share of the other's (compare_panels.FILL)


@dataclass
class SpatialPair:
    """Two agents' spatial credit for one step, drawn on one scale (compare mode)."""

    figure: go.Figure
    with_difference: bool
    why: str   # why no B − A panel ("" with one)


def _rows(res) -> np.ndarray:
    """[2, H, W]: the current step's map (a stack's frames summed) and the window's sum."""
    maps = res.maps.sum(1)
    return np.stack([maps[-1], maps[res.mask].sum(0)])


def spatial_compare(res_a, res_b, label_a: str, label_b: str, data: str = "",
                    action_names: list[str] | None = None) -> SpatialPair:
    """A's and B's credit on the explained step's observation (top row) and summed over each one's window (bottom row),
    side by side on ONE scale per row (the larger of the two agents' strongest credit: equal opacity is equal credit),
    then B − A on that same scale where it informs: each agent's strongest window-sum credit at least FILL of the other's
    (else B − A is the larger map again, and the subtitle says so)."""
    if res_a.observations.shape[1:] != res_b.observations.shape[1:] or res_a.layout != res_b.layout:
        raise ValueError("the two agents' credit must be on observations of one shape.")
    if res_a.episode != res_b.episode or res_a.step != res_b.step:
        raise ValueError("the two agents' credit must explain the same step of the same episode.")
    ra, rb = _rows(res_a), _rows(res_b)
    peak = np.array([np.abs(ra[1]).max(), np.abs(rb[1]).max()])
    informs = bool(peak.min() > 0 and peak.min() >= FILL * peak.max())
    why = "" if informs else (f"no B − A: {plain(label_a if peak[0] < peak[1] else label_b)}'s strongest credit is "
                              f"{peak.min() / peak.max():.0%} of the other's, so B − A would redraw the larger map"
                              if peak.max() > 0 else "no B − A: neither agent's output depends on this observation")
    maps = [ra, rb] + ([rb - ra] if informs else [])
    top = np.maximum(np.abs(ra).reshape(2, -1).max(1), np.abs(rb).reshape(2, -1).max(1))   # per row, both agents
    pics, _ = _pictures_and_maps(res_a, ra)
    now = pics[-1]
    cols = len(maps)
    cells = []
    for m in maps:
        _, laid = _pictures_and_maps(res_a, m)
        cells.append(_blend(np.stack([now, now]), laid, top))
    names = [plain(label_a), plain(label_b)]
    own = []
    for res in (res_a, res_b):
        part = f"{int(res.mask.sum())} steps, f(x) = {res.output:.3g}"
        if res.delta is not None:
            part += f", IG δ = {res.delta:.1e}"
        own.append(part)
    heads = names + ([f"B − A ({names[1]} − {names[0]})"] if informs else [])
    titles = [f"{h}: now" + (f"<br>{own[c]}" if c < 2 else "<br>") for c, h in enumerate(heads)] + \
        [f"{h}: window sum" for h in heads]
    fig = make_subplots(rows=2, cols=cols, subplot_titles=titles, horizontal_spacing=0.03, vertical_spacing=0.06)
    for r in range(2):   # row by row, as the subplot titles
        for c, pic in enumerate(cells):
            fig.add_trace(go.Image(z=pic[r], hovertemplate="x %{x}, y %{y}<extra></extra>"), row=r + 1, col=c + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    method = plain(_METHOD_NAMES.get(res_a.method, res_a.method))
    what = plain(named_actions(res_a.target_label, action_names))
    sub = [f"{names[0]} vs {names[1]}", f"episode {res_a.episode}, step {res_a.step}" + (f" of {data}" if data else "")]
    if res_a.method == "ig":
        sub.append(f"baseline {plain(res_a.baseline)}")
    scale = f"one scale per row for both agents: full opacity at |credit| {top[0]:.2g} (now), {top[1]:.2g} (window sum)"
    colours = ("red: for the output, blue: against it" if res_a.method == "ig" else "red: |∂f/∂x|") + \
        ("; B − A: red where B's credit is larger, blue where A's is" if informs else "")
    title = (f"{method} on the observations — {what}<br><sup>{' · '.join(sub)}" + (f"<br>{why}" if why else "")
             + f"<br>{scale}<br>{colours}</sup>")
    width = max(720, cols * 300)
    cell_h = int((width - 20) / cols * now.shape[0] / now.shape[1])
    head_px = 40   # the first row's two-line panel headers: fit() (export, page) makes their room above the plot
    fig.update_layout(template=TEMPLATE, title=title, width=width,
                      height=int(2 * cell_h / 0.94) + top_margin(title) + head_px,
                      margin=dict(t=top_margin(title) - 10, l=10, r=10, b=10))
    for a in fig.layout.annotations:
        a.font = dict(size=11)
    return SpatialPair(fig, informs, why)
