"""Animated episodes (issue 16): overlays drawn onto an episode's frames, encoded as GIF or MP4.

- `overlay_frames` draws, under every frame, the step, the action, the reward and the return-to-go, and (for a
  Decision Transformer) a bar of where the action token looks over its context steps, for all frames in one
  batched pass: the panel is drawn once and copied, the bars are coloured as one array operation, and only each
  frame's line of text goes through PIL (bench `episode_video` times it against one plotly figure per frame).
- `encode` writes GIF (Pillow through imageio) or MP4 (libx264, yuv420p, through imageio-ffmpeg's own ffmpeg
  binary; no system ffmpeg); `encode_bounded` keeps a file under `max_bytes` (10 MB by default;
  `SEQLENS_MAX_VIDEO_BYTES`), downscaling and then halving the frame rate until it fits, and says so.
- `EpisodeClip` is what the catalog figure `episode_video` carries: one episode and its overlays, rendered
  (analysis/media/frames.py) and encoded only when a file is asked for. Given a model's imagined continuation
  (`analysis.behaviour.predictions.imagined_continuation`), each frame is the real one beside the one drawn from the imagined
  state (`side_by_side`, captioned "real" / "imagined by <model>"), the L2 error between the states in the overlay.
"""
from __future__ import annotations

import io
import math
import os
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from analysis.media import frames as _frames
VIDEO_FORMATS = ("gif", "mp4")
DEFAULT_WIDTH = 480            # px: a blog column; frames are scaled to it (Key-to-Door's 80 px up, by whole cells)
PAGE_WIDTH = 720               # px: what the pages' downloads (episode player, live play) are drawn at
MIN_FONT_PX = 12               # the overlay's text at 1x, never smaller: past it, lines wrap (a 6 px label did not read)
SEP = "   "                    # between the overlay's parts (step, action, reward, ...): where a long line wraps
MAX_VIDEO_BYTES = 10_000_000   # a 500-step episode must fit (issue 16)
MIN_ENCODE_FPS, MAX_ENCODE_FPS = 1 / 16, 1_000   # what encode writes: 1 fps halved four times to fit the size bound
GIF_MAX_FPS = 50               # GIF delays are whole centiseconds and browsers slow anything under 2 to 10
MP4_CRF = 18                   # libx264 quality: visually clean line art, still ~100 KB for 500 CartPole steps
MIN_WIDTH = 160                # below this the text no longer reads; the size bound halves the frame rate instead

_PANEL, _TEXT, _MUTED, _GAP = (247, 247, 247), (34, 34, 34), (110, 110, 110), (225, 225, 225)


class VideoError(ValueError):
    """An episode that cannot be made into a video, or a bad setting; str() is one sentence."""


# ---- overlays ------------------------------------------------------------------------------------------
@dataclass
class Overlay:
    """What is written under each frame; one entry per frame."""

    steps: np.ndarray                    # [n] step within the episode
    length: int                          # the episode's steps ("step t / length")
    actions: list[str]                   # [n] the action taken at that step, as text
    rewards: np.ndarray                  # [n] the reward it got
    rtg: np.ndarray | None = None        # [n] return-to-go at that step
    rtg_label: str = "return-to-go"
    attention: np.ndarray | None = None  # [n, K] the action token's weight per step back (0 = this step)
    error: np.ndarray | None = None      # [n] L2 between the imagined and the real state (NaN: none imagined)
    captions: list[str] | None = None    # one per side-by-side panel, written above it (panels of equal width)
    predicted_return: np.ndarray | None = None   # [n] a DT's return head: R(t+1) predicted at the step (NaN: none)

    def texts(self) -> list[str]:
        out = []
        for i, t in enumerate(self.steps):
            parts = [f"step {int(t)}/{self.length}", self.actions[i], f"reward {_num(self.rewards[i])}"]
            if self.rtg is not None:
                parts.append(f"{self.rtg_label} {_num(self.rtg[i])}")
            if self.predicted_return is not None and np.isfinite(self.predicted_return[i]):
                parts.append(f"R(t+1) predicted {_num(self.predicted_return[i])}")
            if self.error is not None and np.isfinite(self.error[i]):
                parts.append(f"L2 error {_err(self.error[i])}")
            out.append(SEP.join(parts))
        return out


def _num(v) -> str:
    v = float(v)
    if v == int(v) and abs(v) < 1e6:
        return f"{int(v)}"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def _err(v) -> str:
    v = float(v)
    return "0" if v == 0 else f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else _num(v)


@lru_cache(maxsize=16)
def _font(px: int):
    """The template's DejaVu Sans where the system has it, else Pillow's own scalable font."""
    from PIL import ImageFont

    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"):
        if os.path.exists(path):
            return ImageFont.truetype(path, px)
    return ImageFont.load_default(size=px)


@lru_cache(maxsize=1)
def _viridis() -> np.ndarray:
    """[256, 3] uint8: the template's sequential scale (Viridis) as a lookup table."""
    from plotly.colors import hex_to_rgb, sequential

    stops = np.array([hex_to_rgb(c) for c in sequential.Viridis], float)
    x = np.linspace(0, 1, len(stops))
    grid = np.linspace(0, 1, 256)
    return np.stack([np.interp(grid, x, stops[:, c]) for c in range(3)], 1).round().astype(np.uint8)


@dataclass
class _Layout:
    font_px: int
    pad: int
    text_y: int
    bar: tuple[int, int, int, int] | None   # x0, y0, x1, y1 inside the panel
    height: int
    lines: int = 1                          # text lines under each frame (a long overlay wraps between its parts)


def _room(width: int, font_px: int) -> int:
    """Pixels a line of text may take: the width less the padding on both sides."""
    return width - 2 * max(4, font_px // 2)


def _wrap(text: str, font, room: int) -> list[str]:
    """The overlay's parts ("   "-separated: step, action, reward, ...) on as few lines as fit `room` px; a part wider
    than the room keeps a line of its own."""
    lines: list[str] = []
    for part in text.split(SEP):
        if lines and font.getlength(lines[-1] + SEP + part) <= room:
            lines[-1] += SEP + part
        else:
            lines.append(part)
    return lines


def _layout(width: int, texts: list[str], K: int | None) -> _Layout:
    """Font size from the width, shrunk until the longest line fits but never below MIN_FONT_PX: past that the text
    wraps onto more lines; the bar row only with attention, its labels MIN_FONT_PX at least too."""
    font_px = max(MIN_FONT_PX, min(26, width // 32))
    longest = max(texts, key=len) if texts else ""
    while font_px > MIN_FONT_PX and _font(font_px).getlength(longest) > _room(width, font_px):
        font_px -= 1
    font = _font(font_px)
    lines = max((len(_wrap(t, font, _room(width, font_px))) for t in texts), default=1)
    pad = max(4, font_px // 2)
    line = int(font_px * 1.3)
    text_y = pad
    if K is None:
        return _Layout(font_px, pad, text_y, None, pad + lines * line + pad, lines)
    small = _font(_small_px(font_px))
    bar_y0 = pad + lines * line + pad // 2
    bar_h = max(6, font_px)
    x0 = pad + int(small.getlength("attention")) + pad
    x1 = min(width, max(x0 + K, width - pad - int(small.getlength("now")) - pad))   # a pixel per step at least
    if x1 - x0 < K:     # too narrow for the bar: the bar starts at the left edge, unlabelled
        x0, x1 = 0, width
    return _Layout(font_px, pad, text_y, (x0, bar_y0, x1, bar_y0 + bar_h), bar_y0 + bar_h + pad, lines)


def _small_px(font_px: int) -> int:
    """The bar's labels ("attention", "now"): a little smaller than the overlay's line, never under MIN_FONT_PX."""
    return max(MIN_FONT_PX, font_px - 3)


def _panel(width: int, lay: _Layout, K: int | None) -> np.ndarray:
    """[h, W, 3] the panel's fixed part (background, the bar's labels), drawn once for every frame."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, lay.height), _PANEL)
    d = ImageDraw.Draw(img)
    d.line([(0, 0), (width, 0)], fill=_GAP)
    if lay.bar is not None:
        small = _font(_small_px(lay.font_px))
        x0, y0, x1, y1 = lay.bar
        mid = (y0 + y1) // 2
        if x0 > 0:
            d.text((lay.pad, mid), "attention", fill=_MUTED, font=small, anchor="lm")
            d.text((x1 + lay.pad, mid), "now", fill=_MUTED, font=small, anchor="lm")
    return np.asarray(img)


def _captions(width: int, captions: list[str], font_px: int) -> np.ndarray:
    """[h, W, 3] one caption centred above each of len(captions) equal panels, drawn once for every frame."""
    from PIL import Image, ImageDraw

    k = len(captions)
    font_px = max(MIN_FONT_PX, font_px)
    room = width / k - 2 * max(4, font_px // 2)
    while font_px > MIN_FONT_PX and max(_font(font_px).getlength(c) for c in captions) > room:
        font_px -= 1
    font = _font(font_px)
    pad = max(4, font_px // 2)
    img = Image.new("RGB", (width, int(font_px * 1.3) + 2 * pad), _PANEL)
    d = ImageDraw.Draw(img)
    for i, c in enumerate(captions):
        while len(c) > 1 and font.getlength(c) > room:   # still too long at MIN_FONT_PX: shortened, never smaller
            c = c[:-2] + "…"
        d.text(((i + 0.5) * width / k, img.height / 2), c, fill=_TEXT, font=font, anchor="mm")
    d.line([(0, img.height - 1), (width, img.height - 1)], fill=_GAP)
    return np.asarray(img)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """[n, H, 2W + gap, 3]: two clips of the same size next to each other, a gap of the panel colour between (even,
    so an even W keeps the width even for MP4)."""
    if left.shape != right.shape:
        raise VideoError(f"side-by-side panels must be the same size, got {left.shape[1:3]} and {right.shape[1:3]}.")
    n, H, W, _ = left.shape
    gap = panel_gap(W)
    out = np.empty((n, H, 2 * W + gap, 3), np.uint8)
    out[:, :, :W] = left
    out[:, :, W:W + gap] = _GAP
    out[:, :, W + gap:] = right
    return out


def panel_gap(width: int) -> int:
    """Pixels between side-by-side panels of `width` px: a thin even rule."""
    return max(2, width // 120 * 2)


def overlay_frames(frames: np.ndarray, ov: Overlay) -> np.ndarray:
    """[n, H + panel, W, 3]: each frame above its panel (step, action, reward, return-to-go; the attention bar,
    oldest context step left, this step right, coloured on one scale over the whole episode). One batched pass."""
    from PIL import Image, ImageDraw

    n, H0, W, _ = frames.shape
    if len(ov.steps) != n:
        raise VideoError(f"{n} frames but {len(ov.steps)} overlay rows; they must match one to one.")
    texts = ov.texts()
    K = None if ov.attention is None else int(ov.attention.shape[1])
    lay = _layout(W, texts, K)
    head = _captions(W, ov.captions, lay.font_px) if ov.captions else None
    top = 0 if head is None else head.shape[0]
    H = top + H0                           # the frame's rows, below the captions
    lay.height += (H + lay.height) % 2     # an even height: MP4's yuv420p needs one, and GIF and MP4 then agree
    out = np.empty((n, H + lay.height, W, 3), np.uint8)
    if head is not None:
        out[:, :top] = head
    out[:, top:H] = frames
    out[:, H:] = _panel(W, lay, K)        # broadcast: the fixed part once for all frames
    if lay.bar is not None:
        x0, y0, x1, y1 = lay.bar
        att = np.nan_to_num(np.asarray(ov.attention, np.float64))
        # one colour scale for the whole clip (frames compare), topped at the 99th percentile so a few peaks (the
        # first steps, with little to attend to) do not darken the rest
        top = float(np.quantile(att, 0.99)) if att.size else 0.0
        top = top if top > 0 else (att.max() if att.size and att.max() > 0 else 1.0)
        colours = _viridis()[np.clip(att / top * 255, 0, 255).astype(np.int64)]   # [n, K, 3]
        colours[np.arange(K)[None, :] > np.asarray(ov.steps)[:, None]] = _GAP     # steps before the episode began
        colours = colours[:, ::-1]                                                # oldest left, this step right
        edges = np.linspace(x0, x1, K + 1).round().astype(np.int64)
        cell = np.repeat(np.arange(K), np.diff(edges))                          # column -> context step
        row = colours[:, cell]                                                  # [n, x1 - x0, 3]
        row[:, np.isin(np.arange(x0, x1), edges[1:-1])] = _PANEL                # a 1 px gap between steps
        out[:, H + y0:H + y1, x0:x1] = row[:, None]
    font = _font(lay.font_px)
    line_h = int(lay.font_px * 1.3)
    strip = Image.new("RGB", (W, line_h * lay.lines), _PANEL)
    draw = ImageDraw.Draw(strip)
    y = H + lay.text_y
    room = _room(W, lay.font_px)
    for i, text in enumerate(texts):     # only the words change per frame
        draw.rectangle([0, 0, W, line_h * lay.lines], fill=_PANEL)
        for j, line in enumerate(_wrap(text, font, room)):
            draw.text((lay.pad, j * line_h), line, fill=_TEXT, font=font)
        out[i, y:y + line_h * lay.lines] = np.asarray(strip)
    return out


# ---- encoding ------------------------------------------------------------------------------------------
def check_format(fmt: str) -> str:
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in VIDEO_FORMATS:
        raise VideoError(f"an episode video is written as gif or mp4, not '{fmt or '(none)'}'.")
    return fmt


def gif_fps(fps: float) -> float:
    """The frame rate a GIF can show: whole centisecond delays, at most 50 frames per second."""
    delay = max(2, round(100 / float(fps)))
    return 100 / delay


def encode(frames: np.ndarray, fmt: str, fps: float) -> bytes:
    """GIF or MP4 bytes of frames [n, H, W, 3] uint8 at fps frames per second."""
    import imageio.v2 as iio2
    import imageio.v3 as iio

    fmt = check_format(fmt)
    if not fps or not math.isfinite(float(fps)) or float(fps) <= 0:
        raise VideoError(f"frame rate must be a positive number, got {fps}.")
    if not MIN_ENCODE_FPS <= float(fps) <= MAX_ENCODE_FPS:   # 1e-300 reached ffmpeg as `-r 0` (a broken pipe)
        raise VideoError(f"frame rate must be between {MIN_ENCODE_FPS:g} and {MAX_ENCODE_FPS:g} frames per second, "
                         f"got {fps!r}.")
    if fmt == "gif":
        indices, palette = _one_palette(frames)
        buf = io.BytesIO()
        # frames as palette indices ("L") with their palette: Pillow writes them as they are instead of quantizing
        # each RGB frame again (3x the time). It merges a frame identical to the one before (adding its delay):
        # the overlays' step counter keeps frames apart.
        iio.imwrite(buf, indices, extension=".gif", is_batch=True, mode="L", palette=palette,
                    duration=1000 / gif_fps(fps), loop=0, optimize=True)
        return buf.getvalue()
    n, H, W, _ = frames.shape
    if H % 2 or W % 2:    # yuv420p halves the chroma planes: even sides, padded with the panel colour
        padded = np.empty((n, H + H % 2, W + W % 2, 3), np.uint8)
        padded[:] = _PANEL
        padded[:, :H, :W] = frames
        frames = padded
    with tempfile.TemporaryDirectory() as tmp:   # ffmpeg writes to a file, not a buffer
        path = Path(tmp) / "episode.mp4"
        writer = iio2.get_writer(path, format="FFMPEG", mode="I", fps=float(fps), codec="libx264",
                                 pixelformat="yuv420p", macro_block_size=1, quality=None,
                                 output_params=["-crf", str(MP4_CRF)], ffmpeg_log_level="error")
        try:
            for f in frames:
                writer.append_data(f)
        finally:
            writer.close()
        return path.read_bytes()


def _rgb_keys(a: np.ndarray) -> np.ndarray:
    return (a[..., 0].astype(np.uint32) << 16) | (a[..., 1].astype(np.uint32) << 8) | a[..., 2]


def _one_palette(frames: np.ndarray) -> tuple[np.ndarray, bytes]:
    """([n, H, W] uint8 indices, 768-byte palette): one palette for the whole clip, the 256 most frequent colours
    of 16 evenly spaced frames kept exactly (backgrounds, the panel, the bodies), any other colour (anti-aliased
    edges) mapped to its nearest entry. Mapped here through a table over all 2^24 colours, filled as colours appear:
    Pillow's own palette mapping is approximate (white became (253, 252, 251)) and a median-cut palette tints too."""
    n, H, W, _ = frames.shape
    sample = frames[np.linspace(0, n - 1, min(n, 16)).round().astype(np.int64), ::2, ::2]
    colours, counts = np.unique(_rgb_keys(sample).ravel(), return_counts=True)
    top = colours[np.argsort(-counts, kind="stable")[:256]]
    rgb = np.stack([(top >> 16) & 255, (top >> 8) & 255, top & 255], 1).astype(np.int64)
    table = np.full(1 << 24, -1, np.int16)
    table[top] = np.arange(len(top))
    out = np.empty((n, H, W), np.uint8)
    chunk = max(1, 4_000_000 // (H * W))   # a few million pixels at a time
    for i in range(0, n, chunk):
        keys = _rgb_keys(frames[i:i + chunk])
        idx = table[keys]
        missing = idx < 0
        if missing.any():
            new = np.unique(keys[missing])
            new_rgb = np.stack([(new >> 16) & 255, (new >> 8) & 255, new & 255], 1).astype(np.int64)
            table[new] = ((new_rgb[:, None, :] - rgb[None]) ** 2).sum(-1).argmin(1)
            idx = table[keys]
        out[i:i + chunk] = idx
    palette = rgb.astype(np.uint8).tobytes()
    return out, palette + bytes(768 - len(palette))


@dataclass
class Encoded:
    data: bytes
    fmt: str
    n_frames: int
    width: int
    height: int
    fps: float
    notes: list[str] = field(default_factory=list)

    @property
    def note(self) -> str | None:
        return " ".join(self.notes) if self.notes else None


def max_video_bytes(value=None) -> int:
    if value is not None:
        if int(value) < 1:
            raise VideoError(f"max_bytes must be a positive number, got {value}.")
        return int(value)
    try:
        got = int(float(os.environ.get("SEQLENS_MAX_VIDEO_BYTES", "")))
    except ValueError:
        return MAX_VIDEO_BYTES
    return got if got > 0 else MAX_VIDEO_BYTES


def encode_bounded(frames: np.ndarray, ov: Overlay, fmt: str, fps: float, max_bytes: int | None = None) -> Encoded:
    """Overlay and encode; while the file is over max_bytes, redraw it smaller (frames downscaled, overlays drawn
    afresh at the new size so the text stays sharp), and below MIN_WIDTH halve the frame rate (every other frame,
    same duration). The notes say what was done, or that it is still over after four tries."""
    fmt = check_format(fmt)
    cap = max_video_bytes(max_bytes)
    notes = []
    if fmt == "gif" and abs(gif_fps(fps) - float(fps)) > 1e-9:
        notes.append(f"GIF delays are whole centiseconds, so {float(fps):g} fps plays at {gif_fps(fps):.3g}.")
    fps = gif_fps(fps) if fmt == "gif" else float(fps)
    keep = np.arange(len(frames))
    raw = frames
    done = overlay_frames(raw, ov)
    data = encode(done, fmt, fps)
    first = len(data)
    for _ in range(4):
        if len(data) <= cap:
            break
        H, W = raw.shape[1:3]
        f = min(0.9, math.sqrt(cap / len(data)) * 0.95)
        if W * f >= MIN_WIDTH:
            size = (max(2, round(W * f)), max(2, round(H * f)))
            raw = np.stack([_frames._resize(x, size) for x in raw])
        else:
            keep, raw, fps = keep[::2], raw[::2], fps / 2
        done = overlay_frames(raw, _take(ov, keep))
        data = encode(done, fmt, fps)
    if len(data) != first:
        notes.append(f"The {fmt.upper()} came to {first / 1e6:.1f} MB, over the {cap / 1e6:g} MB bound, so it is drawn "
                     f"at {done.shape[2]} x {done.shape[1]}, {len(done)} frames at {fps:g} fps ({len(data) / 1e6:.2f} MB).")
    if len(data) > cap:
        notes.append(f"It is still {len(data) / 1e6:.1f} MB, over the {cap / 1e6:g} MB bound: ask for fewer steps "
                     "(steps=) or a smaller width.")
    H, W = done.shape[1:3]
    if fmt == "mp4":    # what the file holds (encode pads odd sides)
        H, W = H + H % 2, W + W % 2
    return Encoded(data, fmt, len(done), W, H, fps, notes)


def _take(ov: Overlay, idx: np.ndarray) -> Overlay:
    return Overlay(ov.steps[idx], ov.length, [ov.actions[i] for i in idx], np.asarray(ov.rewards)[idx],
                   None if ov.rtg is None else np.asarray(ov.rtg)[idx], ov.rtg_label,
                   None if ov.attention is None else np.asarray(ov.attention)[idx],
                   None if ov.error is None else np.asarray(ov.error)[idx], ov.captions,
                   None if ov.predicted_return is None else np.asarray(ov.predicted_return)[idx])


# ---- one episode, ready to render ------------------------------------------------------------------------
def action_texts(actions: np.ndarray, labels: list[str] | None, names: list[str] | None) -> list[str]:
    """Each step's action as text: its label for a discrete action, name=value for continuous ones."""
    actions = np.asarray(actions)
    if actions.ndim == 1 and np.issubdtype(actions.dtype, np.integer):
        return [(labels[a].replace("_", " ") if labels and 0 <= a < len(labels) else f"action {a}") for a in actions]
    a = actions.reshape(len(actions), -1)
    if a.shape[1] == 1:
        name = (names or ["action"])[0].replace("_", " ")
        return [f"{name} {v:+.2f}" for v in a[:, 0]]
    return ["action [" + ", ".join(f"{v:+.2f}" for v in row[:4]) + (", …]" if len(row) > 4 else "]") for row in a]


@dataclass
class Rendered:
    frames: np.ndarray | None      # [n, H, W, 3] raw frames (no overlay), None when none can be drawn
    overlay: Overlay | None
    why: str
    note: str | None
    fps: float
    reason: str | None = None      # no frames: why, as a clause


@dataclass
class EpisodeClip:
    """One episode to animate and what is written under its frames; rendered and encoded on request, so a cached
    figure holds only the episode's arrays."""

    episode: object                      # a one-episode trajectories.Dataset (observations, actions, rewards)
    env_id: str | None
    title: str
    rtg: np.ndarray | None               # [T] return-to-go shown at each step
    rtg_label: str = "return-to-go"
    attention: np.ndarray | None = None  # [m, K] at attention_steps (0 = this step), or None
    attention_steps: np.ndarray | None = None
    start: int = 0
    stop: int | None = None
    width: int | None = DEFAULT_WIDTH
    fps: float | None = None
    max_frames: int | None = None
    replay_seed: int | None = None       # a rollout's reset seed: the environment replays what data cannot draw
    notes: list[str] = field(default_factory=list)
    imagined: object | None = None       # the episode with a model's imagined states (predictions.Imagined.episode):
                                         # drawn beside the real frames, each panel `width` px wide
    imagined_by: str | None = None       # "<model> from step S": the right panel's caption after "imagined by"
    error: np.ndarray | None = None      # [T] L2 between the imagined and the real state (NaN: not imagined)
    predicted_return: np.ndarray | None = None   # [T] a DT's return head, R(t+1) predicted at each step
    actors: list[str] | None = None      # [T] who took each step (live play: "you" / "agent"), after its action

    @property
    def length(self) -> int:
        return int(self.episode.n_transitions)

    def planned_steps(self) -> np.ndarray:
        """The steps the frames will show (frames.plan_steps over [start, stop)), known before rendering."""
        stop = self.length if self.stop is None else min(int(self.stop), self.length)
        return _frames.plan_steps(stop - self.start, self.max_frames, "even")[0] + self.start

    def render(self) -> Rendered:
        ds = self.episode
        # side by side, the two panels share the frame-bytes bound (each gets half)
        bound = None if self.imagined is None else max(1, _frames.limit("max_bytes") // 2)
        fr = _frames.from_data(ds, 0, env_id=self.env_id, start=self.start, stop=self.stop,
                               max_frames=self.max_frames, width=self.width, max_bytes=bound)
        if not fr.ok and self.replay_seed is not None and self.env_id and self.start == 0:
            stop = self.length if self.stop is None else min(int(self.stop), self.length)
            again = _frames.replay(self.env_id, ds.actions[:stop], self.replay_seed, observations=ds.observations,
                                   max_frames=self.max_frames, width=self.width)
            fr = again if again.ok else fr
        if not fr.ok:
            return Rendered(None, None, fr.why, fr.note, fr.fps, fr.reason)
        steps, pictures, captions = fr.steps, fr.frames, None
        if self.imagined is not None:
            im = _frames.from_data(self.imagined, 0, env_id=self.env_id, start=self.start, stop=self.stop,
                                   max_frames=self.max_frames, width=self.width, max_bytes=bound)
            if not im.ok:
                return Rendered(None, None, im.why, im.note, im.fps, im.reason)
            if not np.array_equal(im.steps, steps):   # a replayed rollout plans its steps otherwise
                raise VideoError("the real and the imagined frames were drawn at different steps; ask for fewer "
                                 "steps than max_frames.")
            pictures = side_by_side(fr.frames, im.frames)
            captions = ["real", f"imagined by {self.imagined_by or 'the model'}"]
        att = None
        if self.attention is not None:
            have = np.asarray(self.attention_steps)
            pos = np.searchsorted(have, steps)
            if (pos < len(have)).all() and (have[pos] == steps).all():   # attention at every step drawn
                att = self.attention[pos]
        labels = list(ds.metadata.get("action_labels") or []) or _env_labels(self.env_id)
        acts = action_texts(ds.actions[steps], labels, ds.act_names)
        if self.actors is not None:
            acts = [f"{a} ({self.actors[int(t)]})" for a, t in zip(acts, steps)]
        ov = Overlay(steps, self.length, acts,
                     ds.rewards[steps], None if self.rtg is None else np.asarray(self.rtg)[steps], self.rtg_label, att,
                     None if self.error is None else np.asarray(self.error)[steps], captions,
                     None if self.predicted_return is None else np.asarray(self.predicted_return)[steps])
        note = " ".join(n for n in [*self.notes, fr.note] if n) or None
        return Rendered(pictures, ov, fr.why, note, float(self.fps or fr.fps))

    def encode(self, fmt: str, max_bytes: int | None = None) -> Encoded:
        fmt = check_format(fmt)
        r = self.render()
        if r.frames is None:
            raise VideoError(f"no {fmt} of {self.title}: {r.reason or r.why}.")
        enc = encode_bounded(r.frames, r.overlay, fmt, r.fps, max_bytes)
        if r.note:
            enc.notes.insert(0, r.note)
        return enc


def _env_labels(env_id) -> list[str] | None:
    import envs

    return envs.ACTION_LABELS.get(env_id) if env_id else None
