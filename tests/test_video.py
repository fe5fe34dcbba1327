"""analysis/media/video.py and the catalog figure episode_video: overlays, GIF/MP4 that decode to the frames asked for, the
size bound, and `cli.py export --figure episode_video` end to end with one sentence for a wrong format."""
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import imageio.v2 as iio2
import imageio.v3 as iio
import numpy as np
import pytest

from analysis.publish import catalog
from analysis.media import video as V
from trajectories import Dataset, load_dataset
from trajectories.samples import SAMPLE_DIR

ROOT = Path(__file__).resolve().parent.parent
CARTPOLE_DT = ROOT / "sample_data" / "agents" / "cartpole-dt"


@pytest.fixture(scope="module")
def cartpole():
    return load_dataset(SAMPLE_DIR / "cartpole.npz")


def _clip(ds, episode, steps=None, attention=True, width=V.DEFAULT_WIDTH):
    one = ds.select([episode])
    T = one.n_transitions if steps is None else steps
    att = np.random.default_rng(episode).dirichlet(np.full(20, 0.3), size=T) if attention else None
    return V.EpisodeClip(one, one.env_id, f"episode {episode}", one.returns_to_go, attention=att,
                         attention_steps=np.arange(T) if attention else None, stop=steps, width=width)


def _gif_frames(data: bytes) -> np.ndarray:
    return iio.imread(data, index=None, extension=".gif")[..., :3]


def _mp4_frames(data: bytes, tmp_path) -> tuple[np.ndarray, dict]:
    path = tmp_path / "v.mp4"
    path.write_bytes(data)
    reader = iio2.get_reader(path, format="FFMPEG")
    try:
        return np.stack([f for f in reader.iter_data()]), reader.get_meta_data()   # len() is inf: no list()
    finally:
        reader.close()


# ---- overlays ----------------------------------------------------------------------------------------------
def test_overlay_draws_text_and_an_attention_bar_under_each_frame():
    frames = np.full((3, 60, 200, 3), 255, np.uint8)
    att = np.zeros((3, 4))
    att[:, 0] = 1.0                      # every step looks only at itself...
    att[2] = [0.1, 0.0, 0.9, 0.0]        # ...but step 2 mostly two steps back
    ov = V.Overlay(np.array([0, 1, 2]), 3, ["left", "right", "left"], np.ones(3), np.array([3.0, 2.0, 1.0]),
                   attention=att)
    out = V.overlay_frames(frames, ov)
    assert out.shape[0] == 3 and out.shape[2] == 200 and out.shape[1] > 60
    assert np.array_equal(out[:, :60], frames)                     # the frame itself untouched
    panels = out[:, 60:]
    assert not np.array_equal(panels[0], panels[1])                # a different step, different words
    assert ov.texts()[1] == "step 1/3   right   reward 1   return-to-go 2"
    # the bar: oldest step left, this step right; a step before the episode began is left empty (grey)
    lay = V._layout(200, ov.texts(), 4)
    x0, y0, x1, y1 = lay.bar
    cells = np.linspace(x0, x1, 5).round().astype(int)
    mid = [(cells[k] + cells[k + 1]) // 2 for k in range(4)]
    row = panels[:, (y0 + y1) // 2]
    yellow = V._viridis()[255]
    assert (row[0, mid[:3]] == V._GAP).all() and (row[0, mid[3]] == yellow).all()        # step 0: itself, nothing else
    lum = row[2, mid].astype(int).sum(-1)          # step 2 (cells: 3 back = before the start, 2, 1, this step)
    assert (row[2, mid[0]] == V._GAP).all() and (row[2, mid[2]] == V._viridis()[0]).all()   # 1 back: weight 0
    assert lum[1] > lum[3] > lum[2]                # 0.9 two back brighter than 0.1 on itself, brighter than 0
    # frames narrower than a pixel per context step still get their panel (the bar unlabelled, steps dropped); its
    # height is its own layout's (issue 27: 12 px text wraps, so a narrower panel holds more lines of it)
    narrow, lay10 = V.overlay_frames(frames[:, :, :10], ov), V._layout(10, ov.texts(), 4)
    assert lay10.bar[0] == 0 and lay10.bar[2] == 10 and lay10.lines == 4
    assert narrow.shape[:3] == (3, 60 + lay10.height + (60 + lay10.height) % 2, 10)


def _ink_rows(panel: np.ndarray, colour, x1: int | None = None) -> np.ndarray:
    """Rows of a panel [h, W, 3] where text of `colour` was drawn (anti-aliased glyphs: pixels nearer the colour than
    the background), left of x1."""
    p = panel[:, :x1].astype(int)
    near = np.abs(p - np.array(colour)).sum(-1) < np.abs(p - np.array(V._PANEL)).sum(-1) - 60
    return np.flatnonzero(near.any(1))


@pytest.mark.parametrize("width", [V.PAGE_WIDTH, V.DEFAULT_WIDTH, V.MIN_WIDTH])
def test_overlay_text_is_at_least_12_px_at_1x(width):
    """Issue 27: the player's GIF had a ~6 px attention label. At every width a file is drawn at, the overlay's line
    and the bar's labels are set in >= 12 px type, measured on the drawn pixels against the same words in 12 px type;
    a line too long for the width wraps between its parts instead of shrinking."""
    n, K = 4, 20
    frames = np.full((n, 40, width, 3), 255, np.uint8)
    ov = V.Overlay(np.arange(n) + 120, 500, ["push right"] * n, np.ones(n), np.array([381.0, 380, 379, 378]),
                   attention=np.full((n, K), 1 / K), predicted_return=np.array([379.5, 378.5, 377.5, 376.5]))
    texts = ov.texts()
    lay = V._layout(width, texts, K)
    assert lay.font_px >= V.MIN_FONT_PX == 12 and V._small_px(lay.font_px) >= 12
    out = V.overlay_frames(frames, ov)
    panel = out[0, 40:]
    lines = V._wrap(texts[0], V._font(lay.font_px), V._room(width, lay.font_px))
    assert " ".join(p for line in lines for p in line.split(V.SEP)) == " ".join(texts[0].split(V.SEP))   # every word
    assert all(V._font(lay.font_px).getlength(line) <= V._room(width, lay.font_px) for line in lines)  # each fits
    assert len(lines) == lay.lines and (width < 720) == (lay.lines > 1)
    x0, y0, x1, y1 = lay.bar
    text_rows = _ink_rows(panel[:y0], V._TEXT)
    line_h = int(lay.font_px * 1.3)
    first = text_rows[text_rows < lay.text_y + line_h]      # the first line of text: "step 120/500 ..."
    ref = V._font(12).getbbox(lines[0])                     # the same words at 12 px: top and bottom of the ink
    assert first.max() - first.min() + 1 >= ref[3] - ref[1]
    label = _ink_rows(panel[y0:y1 + 4], V._MUTED, x0)       # "attention", left of the bar
    ref = V._font(12).getbbox("attention")
    assert label.max() - label.min() + 1 >= ref[3] - ref[1] - 1   # anti-aliasing may leave a faint row out


def test_side_by_side_captions_keep_12_px_and_shorten_instead():
    head = V._captions(200, ["real", "imagined by a model with a very long name from step 10"], 12)
    assert head.shape[0] == int(12 * 1.3) + 2 * 6       # drawn at 12 px, not shrunk below it
    assert (head[:, 100:] != V._PANEL).any()


def test_gif_and_mp4_decode_to_the_frames_asked_for(cartpole, tmp_path):
    clip = _clip(cartpole, 3, steps=24)
    r = clip.render()
    done = V.overlay_frames(r.frames, r.overlay)
    gif = clip.encode("gif")
    g = _gif_frames(gif.data)
    assert g.shape == done.shape == (24, done.shape[1], V.DEFAULT_WIDTH, 3)
    assert (gif.n_frames, gif.width, gif.height) == (24, V.DEFAULT_WIDTH, done.shape[1])
    assert np.abs(g.astype(int) - done).mean() < 0.1      # one exact palette: only rare edge shades move
    assert gif.fps == 50.0 and not gif.notes              # CartPole's render_fps
    mp4 = clip.encode("mp4")
    m, meta = _mp4_frames(mp4.data, tmp_path)
    H = done.shape[1]
    assert H % 2 == 0                                     # yuv420p: even sides (the panel takes the odd row)
    assert m.shape == (24, H, V.DEFAULT_WIDTH, 3) and (mp4.height, mp4.width) == (H, V.DEFAULT_WIDTH)
    assert meta["fps"] == 50.0 and meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert np.abs(m.astype(int) - done).mean() < 3.0     # lossy, but the same pictures


def test_frame_rate_and_resolution_are_settable(cartpole, tmp_path):
    clip = _clip(cartpole, 3, steps=12, width=240)
    clip.fps = 10
    gif = clip.encode("gif")
    assert _gif_frames(gif.data).shape[1:3] == (gif.height, 240) and gif.fps == 10
    assert iio.immeta(gif.data, extension=".gif", index=0)["duration"] == 100    # ms per frame
    assert V.gif_fps(30) == pytest.approx(100 / 3) and V.gif_fps(50) == 50 and V.gif_fps(100) == 50
    clip.fps = 30
    assert clip.encode("gif").note == "GIF delays are whole centiseconds, so 30 fps plays at 33.3."
    mp4 = clip.encode("mp4")                     # MP4 keeps any rate
    assert _mp4_frames(mp4.data, tmp_path)[1]["fps"] == 30 and not mp4.notes


def test_a_500_step_cartpole_episode_fits_the_size_bound(cartpole, tmp_path):
    first = int(np.flatnonzero(cartpole.episode_lengths == 500)[0])
    clip = _clip(cartpole, first)
    r = clip.render()
    assert r.frames.shape[0] == 500
    sizes = {}
    for fmt in V.VIDEO_FORMATS:
        enc = V.encode_bounded(r.frames, r.overlay, fmt, r.fps)
        sizes[fmt] = len(enc.data)
        assert len(enc.data) < V.MAX_VIDEO_BYTES and not enc.notes, (fmt, len(enc.data))
        assert enc.n_frames == 500 and enc.width == V.DEFAULT_WIDTH
        if fmt == "gif":    # every frame is in the file (counted one at a time: 500 decoded frames are 270 MB)
            assert sum(1 for _ in iio.imiter(enc.data, extension=".gif")) == 500
    print("500-step CartPole episode:", {k: f"{v / 1e6:.2f} MB" for k, v in sizes.items()})


def test_an_oversized_video_is_redrawn_smaller_and_says_so(cartpole):
    clip = _clip(cartpole, 3, steps=40)
    r = clip.render()
    full = V.encode_bounded(r.frames, r.overlay, "gif", r.fps)
    cap = len(full.data) // 3
    small = V.encode_bounded(r.frames, r.overlay, "gif", r.fps, max_bytes=cap)
    assert len(small.data) <= cap and small.width < V.DEFAULT_WIDTH
    assert f"over the {cap / 1e6:g} MB bound" in small.note and f"{small.width} x {small.height}" in small.note
    g = _gif_frames(small.data)
    assert g.shape == (small.n_frames, small.height, small.width, 3)
    # a cap no width can meet: the frame rate halves (every other frame), and it says when it is still over
    tiny = V.encode_bounded(r.frames, r.overlay, "gif", r.fps, max_bytes=2_000)
    assert tiny.n_frames < 40 and tiny.fps < r.fps and "still" in tiny.note


def test_bad_settings_are_one_sentence(cartpole):
    with pytest.raises(V.VideoError, match="written as gif or mp4, not 'png'"):
        _clip(cartpole, 0, steps=3).encode("png")
    with pytest.raises(V.VideoError, match="frame rate must be a positive number"):
        V.encode(np.zeros((2, 8, 8, 3), np.uint8), "gif", 0)


# ---- the catalog figure --------------------------------------------------------------------------------------
def test_episode_video_from_data_carries_its_clip_data_and_preview(cartpole):
    f = catalog.make("episode_video", None, cartpole, episode=2, steps=10)
    assert f.video is not None and f.params == {"episode": 2, "start": 0, "steps": 10, "width": 480, "seed": 0}
    assert list(f.data.columns) == ["step", "action", "reward", "return_to_go"] and len(f.data) == 10
    ep = cartpole.episode(2)
    assert f.data["return_to_go"].tolist() == pytest.approx(ep.returns_to_go[:10].tolist())
    assert f.data["action"].iloc[0] == ("push right" if ep.actions[0] == 1 else "push left")
    assert f.figure.data[0].type == "image"
    assert _gif_frames(f.video.encode("gif").data).shape[0] == 10


def test_episode_video_of_a_dt_shows_where_its_action_token_looks(cartpole):
    from models import load_agent

    dt = load_agent(CARTPOLE_DT)
    f = catalog.make("episode_video", dt, cartpole, episode=1, steps=8)
    att = f.video.attention
    assert att.shape == (8, dt.context_length)
    assert att.sum(1) == pytest.approx(np.ones(8), abs=1e-4)        # one distribution over the steps back
    assert att[0, 0] == pytest.approx(1.0) and (att[np.arange(8)[:, None] < np.arange(20)[None]] == 0).all()
    assert f"attention_back_{dt.context_length - 1}" in f.data.columns
    # rolled out with no dataset: the rollout's own attention, oriented the same way (0 = this step)
    r = catalog.make("episode_video", dt, None, episode=0, steps=6)
    assert r.video.attention.shape == (6, 20) and r.video.attention[0, 0] == pytest.approx(1.0)
    assert r.params["target_return"] == 500.0 and r.video.replay_seed == 0
    assert r.data["return_to_go"].tolist() == [500, 499, 498, 497, 496, 495]   # the target left after each reward


def test_episode_video_of_a_dt_writes_its_return_heads_prediction_under_each_frame(cartpole):
    """The DT's return head (R(t+1) predicted at each step, analysis.behaviour.predictions) is written beside the logged
    return-to-go in the overlay and the csv; a rollout (asked for a target, not the logged return) gets none."""
    from analysis.behaviour.predictions import dt_return_predictions
    from models import load_agent

    dt = load_agent(CARTPOLE_DT)
    f = catalog.make("episode_video", dt, cartpole, episode=1, start=3, steps=5)
    pred = dt_return_predictions(dt, cartpole.select([1]), 0)[0][3:8]
    assert np.allclose(f.data["predicted_next_return_to_go"], pred)
    texts = f.video.render().overlay.texts()
    assert [t.split("R(t+1) predicted ")[1] for t in texts] == [V._num(v) for v in pred]
    assert "R(t+1)" not in " ".join(catalog.make("episode_video", dt, None, steps=3).video.render().overlay.texts())


def test_data_that_cannot_be_drawn_gets_a_state_line_preview_and_one_sentence():
    n = 6
    ds = Dataset(np.random.default_rng(0).normal(size=(n, 5)).astype(np.float32), np.zeros(n, np.int64),
                 np.ones(n, np.float32), np.zeros(n, bool), np.zeros(n, bool), [0], source="mystery.npz")
    f = catalog.make("episode_video", None, ds)
    assert f.figure.data[0].type == "scatter" and "names no environment" in f.figure.layout.title.text
    with pytest.raises(V.VideoError) as e:
        f.video.encode("gif")
    assert str(e.value) == "no gif of Episode 0 of mystery.npz: it names no environment to draw its observations with."


def test_bundle_holds_the_gif_mp4_and_csv(cartpole):
    from analysis.publish.export import bundle

    f = catalog.make("episode_video", None, cartpole, episode=0, steps=5)
    z = zipfile.ZipFile(io.BytesIO(bundle([f], formats=("gif", "mp4", "csv"), dataset=cartpole)))
    assert sorted(z.namelist()) == ["episode_video.csv", "episode_video.gif", "episode_video.mp4", "manifest.json"]
    assert _gif_frames(z.read("episode_video.gif")).shape[0] == 5
    remake = json.loads(z.read("manifest.json"))["figures"][0]["remake"]
    assert "--figure episode_video" in remake and "--param steps=5" in remake


# ---- the CLI -------------------------------------------------------------------------------------------------
def cli(*args):
    return subprocess.run([sys.executable, "cli.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_cli_exports_a_rollout_gif_and_a_dataset_mp4(tmp_path):
    out = tmp_path / "ep.gif"
    res = cli("export", "--figure", "episode_video", "--agent", CARTPOLE_DT, "--param", "episode=1", "--param", "steps=25",
              "--format", "gif", "--out", out, "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["data"] is None and got["frames"] == 25 and got["params"]["target_return"] == 500.0   # a rollout
    g = _gif_frames(out.read_bytes())
    assert g.shape == (25, got["height"], got["width"], 3) and got["width"] == 480
    from cli import main

    mp4 = tmp_path / "ep.mp4"
    assert main(["export", "--figure", "episode_video", "--agent", str(CARTPOLE_DT), "--data",
                 str(SAMPLE_DIR / "cartpole.npz"), "--param", "episode=4", "--param", "steps=12", "--out", str(mp4)]) == 0
    assert _mp4_frames(mp4.read_bytes(), tmp_path)[0].shape[0] == 12


@pytest.mark.parametrize("args, words", [
    (["--figure", "episode_video", "--data", SAMPLE_DIR / "cartpole.npz", "--format", "png", "--out", "x.png"],
     "figure 'episode_video' is an animation: export it as gif or mp4 (or zip, a bundle), not 'png'."),
    (["--figure", "episode_video", "--data", SAMPLE_DIR / "cartpole.npz", "--out", "x.csv"],
     "is an animation: export it as gif or mp4"),
    (["--figure", "returns_histogram", "--data", SAMPLE_DIR / "cartpole.npz", "--format", "mp4", "--out", "x.mp4"],
     "figure 'returns_histogram' is a still figure and mp4 is for animated ones (episode_video)"),
    (["--figure", "episode_video", "--out", "x.gif"], "needs a dataset (--data PATH) or an agent to roll out"),
    (["--figure", "episode_video", "--agent", CARTPOLE_DT, "--compare", "randomized", "--out", "x.gif"], "no --compare"),
    (["--figure", "episode_video", "--data", SAMPLE_DIR / "cartpole.npz", "--param", "episode=999", "--out", "x.gif"],
     "episode 999 is out of range"),
    (["--figure", "episode_video", "--data", SAMPLE_DIR / "cartpole.npz", "--param", "width=wide", "--out", "x.gif"],
     "parameter width must be a whole number"),
])
def test_cli_bad_formats_and_params_are_one_sentence(args, words, tmp_path, capsys):
    from cli import main

    assert main(["export", *map(str, args[:-1]), str(tmp_path / args[-1])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / args[-1]).exists()


# ---- predicted vs real: the model's imagined continuation beside the real episode (issue 16 item 3) ------------
PENDULUM_TT = ROOT / "sample_data" / "agents" / "pendulum-tt"


@pytest.fixture(scope="module")
def pendulum():
    return load_dataset(SAMPLE_DIR / "pendulum.npz")


@pytest.fixture(scope="module")
def pendulum_tt():
    from models import load_agent

    return load_agent(PENDULUM_TT)


def _find_rows(done: np.ndarray, frames: np.ndarray) -> int:
    """The row where the raw frames sit inside the overlaid ones (below the captions)."""
    H = frames.shape[1]
    return next(y for y in range(done.shape[1] - H + 1) if np.array_equal(done[:, y:y + H], frames))


def test_imagined_side_by_side_gif_and_mp4_show_the_real_and_the_imagined_frame(pendulum, pendulum_tt, tmp_path):
    from analysis.media import frames
    from analysis.behaviour.predictions import imagined_continuation

    W, s0, H = 240, 10, 6
    f = catalog.make("episode_video", pendulum_tt, pendulum, episode=0, imagine_start=s0, imagine_horizon=H, width=W)
    assert f.params["imagine_start"] == s0 and f.params["imagine_horizon"] == H
    gap = V.panel_gap(W)
    r = f.video.render()
    assert r.frames.shape[:3] == (H + 1, W, 2 * W + gap)            # Pendulum is square: 240 x 240 per panel
    assert r.overlay.steps.tolist() == list(range(s0, s0 + H + 1))
    assert r.overlay.captions == ["real", "imagined by TT from step 10"]   # the model, not its training data (issue 27)
    # at step t: the left panel is the real frame drawn alone, the right one the frame of the state the model imagined
    one = pendulum.select([0])
    im = imagined_continuation(pendulum_tt, one, s0, H)
    i, t = 4, s0 + 4
    real = frames.from_data(one, 0, start=t, stop=t + 1, width=W).frames[0]
    dream = one.select([0])
    dream.observations[t] = im.result.predicted[t, :-1]
    imagined = frames.from_data(dream, 0, start=t, stop=t + 1, width=W).frames[0]
    assert np.array_equal(r.frames[i, :, :W], real) and np.array_equal(r.frames[i, :, W + gap:], imagined)
    assert not np.array_equal(real, imagined)                         # the model's state is not the logged one
    assert np.array_equal(r.frames[0, :, :W], r.frames[0, :, W + gap:])   # it starts from the logged state
    assert (r.frames[:, :, W:W + gap] == V._GAP).all()
    # the overlay: the L2 error between the imagined and the real state, 0 where it starts
    err = np.linalg.norm(im.result.predicted[t, :-1] - one.observations[t])
    assert r.overlay.error[0] == 0 and r.overlay.error[i] == pytest.approx(err)
    assert f"L2 error {V._err(err)}" in r.overlay.texts()[i]
    assert f.data["error_l2"].tolist() == pytest.approx(r.overlay.error.tolist())
    assert f.data["imagined_cos_theta"].iloc[i] == pytest.approx(im.result.predicted[t, 0])
    done = V.overlay_frames(r.frames, r.overlay)
    y = _find_rows(done, r.frames)
    assert y > 0                                                      # the captions are above the frames
    gif = f.video.encode("gif")
    g = _gif_frames(gif.data)
    assert g.shape == done.shape == (H + 1, done.shape[1], 2 * W + gap, 3)
    assert (gif.n_frames, gif.width, gif.height) == (H + 1, 2 * W + gap, done.shape[1])
    assert np.abs(g.astype(int) - done).mean() < 0.1
    assert np.abs(g[i, y:y + W, :W].astype(int) - real).mean() < 0.5
    assert np.abs(g[i, y:y + W, W + gap:].astype(int) - imagined).mean() < 0.5
    mp4 = f.video.encode("mp4")
    m, meta = _mp4_frames(mp4.data, tmp_path)
    assert m.shape == done.shape and (mp4.width, mp4.height) == (2 * W + gap, done.shape[1])
    assert np.abs(m.astype(int) - done).mean() < 3.0
    assert np.abs(m[i, y:y + W, W + gap:].astype(int) - imagined).mean() < 3.0
    assert f.figure.data[0].type == "image"                           # the preview: the first side-by-side frame


def test_imagined_clip_keeps_the_size_bound_fps_and_says_when_the_episode_ends_first(pendulum, pendulum_tt):
    f = catalog.make("episode_video", pendulum_tt, pendulum, episode=1, imagine_start=195, fps=10, width=160)
    assert "the model imagines 4 steps, not 20" in f.video.notes[0] and len(f.data) == 5
    r = f.video.render()
    full = V.encode_bounded(r.frames, r.overlay, "gif", r.fps)
    assert full.fps == 10 and full.width == 2 * 160 + V.panel_gap(160)
    small = V.encode_bounded(r.frames, r.overlay, "gif", r.fps, max_bytes=len(full.data) // 2)
    assert small.width < full.width and "over the" in small.note
    assert _gif_frames(small.data).shape[1:3] == (small.height, small.width)


def test_the_bundle_remakes_the_imagined_clip(pendulum, pendulum_tt):
    from analysis.publish.export import bundle

    f = catalog.make("episode_video", pendulum_tt, pendulum, episode=0, imagine_start=5, imagine_horizon=3, width=160)
    z = zipfile.ZipFile(io.BytesIO(bundle([f], formats=("gif", "csv"), agent=pendulum_tt, dataset=pendulum,
                                          agent_path=PENDULUM_TT, data_path=SAMPLE_DIR / "pendulum.npz")))
    assert _gif_frames(z.read("episode_video.gif")).shape[0] == 4
    remake = json.loads(z.read("manifest.json"))["figures"][0]["remake"]
    assert "--param imagine_start=5" in remake and "--param imagine_horizon=3" in remake


@pytest.mark.parametrize("agent_dir, data, words", [
    ("pendulum-dt", "pendulum", "no side-by-side video of an imagined continuation: a Decision Transformer imagines "
                                "no future states (its state head is untrained"),
    ("cartpole-mlp", "cartpole", "needs a Trajectory Transformer or a dynamics model; this MLP agent predicts no future"),
    (None, "pendulum", "needs a Trajectory Transformer or a dynamics model."),
])
def test_agents_that_imagine_no_states_get_one_sentence(agent_dir, data, words):
    from models import load_agent

    agent = load_agent(ROOT / "sample_data" / "agents" / agent_dir) if agent_dir else None
    with pytest.raises(V.VideoError) as e:
        catalog.make("episode_video", agent, load_dataset(SAMPLE_DIR / f"{data}.npz"), imagine_start=3)
    assert words in str(e.value) and len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize("params, words", [
    # the catalog's declared ranges (analysis/publish/catalog.py RANGES) answer before the entry runs
    ({"imagine_start": 200}, "imagine_start 200 is out of range: episode 0 has 200 steps (0 to 198)."),
    ({"imagine_start": -1}, "imagine_start -1 is out of range: episode 0 has 200 steps (0 to 198)."),
    ({"imagine_start": 2.5}, "parameter imagine_start must be a whole number between 0 and 198 (episode 0 has 200 "
                             "steps), got 2.5."),
    ({"imagine_start": "soon"}, "parameter imagine_start must be a whole number between 0 and 198 (episode 0 has "
                                "200 steps), got 'soon'."),
    ({"imagine_start": 3, "imagine_horizon": 51}, "parameter imagine_horizon must be a whole number between 1 and 50, "
                                                  "got 51."),
    ({"imagine_start": 3, "imagine_horizon": 0}, "parameter imagine_horizon must be a whole number between 1 and 50, "
                                                 "got 0."),
    ({"imagine_horizon": 5}, "give its first step too (imagine_start)"),
    ({"imagine_start": 3, "steps": 4}, "leave start and steps out"),
])
def test_bad_imagine_settings_are_one_sentence(pendulum, pendulum_tt, params, words):
    with pytest.raises(V.VideoError) as e:
        catalog.make("episode_video", pendulum_tt, pendulum, **params)
    assert words in str(e.value) and len(str(e.value).splitlines()) == 1


def test_cli_exports_the_imagined_side_by_side_mp4(tmp_path):
    out = tmp_path / "imagined.mp4"
    res = cli("export", "--figure", "episode_video", "--agent", PENDULUM_TT, "--data", SAMPLE_DIR / "pendulum.npz",
              "--param", "episode=0", "--param", "imagine_start=10", "--param", "imagine_horizon=5", "--format", "mp4",
              "--out", out, "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["frames"] == 6 and got["width"] == 2 * V.DEFAULT_WIDTH + V.panel_gap(V.DEFAULT_WIDTH)
    m, meta = _mp4_frames(out.read_bytes(), tmp_path)
    assert m.shape == (6, got["height"], got["width"], 3) and meta["codec"] == "h264"
