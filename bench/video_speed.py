"""An episode video: a 500-step CartPole episode rendered, overlaid and encoded as a GIF (issue 16).

Ours: analysis.media.frames.from_data (the environment put into each logged state) and analysis.media.video.overlay_frames (every
frame's panel in one batched pass: the fixed part once, the attention bars as one array operation, only the words
through PIL), then analysis.media.video.encode. Naive twin: the same frames, each made into one plotly figure (the frame,
its text and its attention bar as a heatmap) exported with `write_image` through one kaleido server kept alive
(analysis.publish.export.export_session), decoded, then the same encoder. Same results: both GIFs decode to the same number
of frames of the same size. The attention is a seeded stand-in (the benchmark is the drawing, not the model).
"""
from __future__ import annotations

import io
import time
import warnings

import numpy as np

from bench.harness import row


def _episode(quick: bool):
    from trajectories import load_dataset
    from trajectories.samples import SAMPLE_DIR

    ds = load_dataset(SAMPLE_DIR / "cartpole.npz")
    first = int(np.flatnonzero(ds.episode_lengths == 500)[0])   # a 500-step episode (the cap)
    one = ds.select([first])
    steps = 20 if quick else 500
    att = np.random.default_rng(0).dirichlet(np.full(20, 0.3), size=steps)
    return one, steps, att


def _overlay(one, steps: int, att: np.ndarray, frames):
    from analysis.media.video import Overlay, action_texts

    idx = frames.steps
    return Overlay(idx, one.n_transitions, action_texts(one.actions[idx], ["push_left", "push_right"], None),
                   one.rewards[idx], one.returns_to_go[idx], "return-to-go", att[idx])


def naive_frame(frame: np.ndarray, text: str, attention_row: np.ndarray, top: float, panel_h: int):
    """One plotly figure of one frame: the frame as an image, its text, its attention bar (oldest step left)."""
    import plotly.graph_objects as go

    H, W = frame.shape[:2]
    total = H + panel_h
    split = panel_h / total
    fig = go.Figure()
    fig.add_trace(go.Image(z=frame, xaxis="x", yaxis="y", hoverinfo="skip"))
    fig.add_trace(go.Heatmap(z=[attention_row[::-1]], colorscale="Viridis", zmin=0, zmax=top, showscale=False,
                             xaxis="x2", yaxis="y2", xgap=1))
    fig.add_annotation(text=text, x=0.01, y=split * 0.8, xref="paper", yref="paper", xanchor="left",
                       showarrow=False, font=dict(family="DejaVu Sans", size=15, color="#222"))
    fig.update_layout(width=W, height=total, margin=dict(l=0, r=0, t=0, b=0), paper_bgcolor="#f7f7f7",
                      xaxis=dict(domain=[0, 1], visible=False), yaxis=dict(domain=[split, 1], visible=False),
                      xaxis2=dict(domain=[0.14, 0.92], visible=False, anchor="y2"),
                      yaxis2=dict(domain=[0.02 * split, 0.4 * split], visible=False, anchor="x2"))
    return fig


def _bench(quick: bool) -> dict:
    import imageio.v3 as iio
    import plotly.io as pio
    from PIL import Image

    from analysis.publish.export import export_session
    from analysis.media.frames import from_data
    from analysis.media.video import DEFAULT_WIDTH, encode, overlay_frames

    one, steps, att = _episode(quick)
    t0 = time.perf_counter()
    fr = from_data(one, 0, stop=steps, width=DEFAULT_WIDTH)
    ov = _overlay(one, steps, att, fr)
    done = overlay_frames(fr.frames, ov)
    ours = encode(done, "gif", fr.fps)
    t1 = time.perf_counter()
    with export_session(), warnings.catch_warnings():   # one Chromium for every write_image, started before the clock
        warnings.filterwarnings("ignore", message="The kopts argument is ignored if using a server")
        t2 = time.perf_counter()
        fr2 = from_data(one, 0, stop=steps, width=DEFAULT_WIDTH)
        H, W = fr2.frames.shape[1:3]
        panel_h = done.shape[1] - H      # the same frame size as ours
        top = float(np.quantile(att, 0.99))
        texts = ov.texts()
        pngs = []
        for i, frame in enumerate(fr2.frames):
            png = pio.to_image(naive_frame(frame, texts[i], att[i], top, panel_h), format="png", width=W,
                               height=H + panel_h, scale=1)
            pngs.append(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
        naive = encode(np.stack(pngs), "gif", fr2.fps)
        t3 = time.perf_counter()
    a = iio.imread(ours, index=None, extension=".gif")
    b = iio.imread(naive, index=None, extension=".gif")
    same = a.shape[:3] == b.shape[:3] == (steps, H + panel_h, W)
    return row(t3 - t2, t1 - t0, same, frames=int(a.shape[0]), size=f"{a.shape[2]}x{a.shape[1]}",
               gif_mb=round(len(ours) / 1e6, 2))


BENCHMARKS = {"episode_video": _bench}
