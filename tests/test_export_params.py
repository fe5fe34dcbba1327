"""Every numeric parameter of every catalog figure has a declared range (analysis/publish/catalog.py RANGES), checked in
catalog.make before any work with one sentence (issue 26, item 9): at its bounds it passes, past them (and NaN, inf,
text, a bool) it is refused; `cli.py export --param fps=1e-300` exits 2 with one line, no traceback, no file."""
import inspect
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.publish import catalog
from analysis.media import video as V
from models import load_agent
from trajectories import load_dataset

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "sample_data" / "agents"
DATA = ROOT / "sample_data" / "datasets"

# the agent and dataset each figure is drawn for here (so bounds read from them are the real ones)
PAIR = {"tt_": ("pendulum-tt", "pendulum"), "prediction_": ("pendulum-tt", "pendulum"),
        "predicted_vs_real": ("pendulum-dynamics", "pendulum"), "attribution_keydoor": ("keydoor-dt", "keydoor")}


def _pair_names(name):
    for prefix, pair in PAIR.items():
        if name.startswith(prefix):
            return pair
    return ("cartpole-dt", "cartpole")


_loaded = {}


def _pair(name):
    agent, data = _pair_names(name)
    if (agent, data) not in _loaded:
        _loaded[agent, data] = (load_agent(AGENTS / agent), load_dataset(DATA / f"{data}.npz"))
    return _loaded[agent, data]


NUMERIC = [(name, p) for name, e in catalog.figures().items() for p in inspect.signature(e.make).parameters
           if p not in ("agent", "dataset") and p not in catalog.NOT_NUMERIC]


def test_every_parameter_is_declared_numeric_with_a_range_or_not_a_number():
    for name, e in catalog.figures().items():
        for p in inspect.signature(e.make).parameters.values():
            if p.name in ("agent", "dataset"):
                continue
            if p.name in catalog.NOT_NUMERIC:   # a name, a choice or a switch: never a number by default
                d = p.default
                assert d is None or isinstance(d, (str, bool)), (name, p.name, d)
            else:
                assert catalog.param_range(name, p.name) is not None, (name, p.name)
    assert len(NUMERIC) > 80


def _refused(name, agent, ds, monkeypatch, **params) -> str:
    """catalog.make refuses before the entry runs (its make is replaced by one that fails the test)."""
    entry = catalog.figures()[name]
    monkeypatch.setattr(entry, "make", lambda *a, **k: pytest.fail(f"{name} ran with {params}"))
    with pytest.raises(ValueError) as e:
        catalog.make(name, agent, ds, **params)
    msg = str(e.value)
    assert "\n" not in msg and msg.endswith(".") and len(msg) < 300, msg
    return msg


@pytest.mark.parametrize("name, param", NUMERIC)
def test_every_numeric_parameter_at_and_past_its_bounds(name, param, monkeypatch):
    agent, ds = _pair(name)
    r = catalog.param_range(name, param)
    lo, hi, whole = catalog.bounds(name, param, agent, ds)
    assert math.isfinite(lo) and math.isfinite(hi) and lo <= hi, (lo, hi)
    if r.items:   # a list of numbers: each within the bounds, 1 to MAX_LIST of them
        catalog.check_params(name, agent, ds, **{param: [lo, hi]})
        for bad in ([lo, hi * 1.5 + 1], [lo - abs(lo) * 0.5 - 1], [], [0.0] * (catalog.MAX_LIST + 1), "many"):
            _refused(name, agent, ds, monkeypatch, **{param: bad})
        return
    for ok in (lo, hi):
        catalog.check_params(name, agent, ds, **{param: ok})
    step = 1 if whole else max(abs(hi - lo) * 1e-6, 1e-9)
    past = [lo - step, hi + step, float("nan"), float("inf"), "x", True, 1e308]
    if whole:
        past.append(lo + 0.5)
    for bad in past:
        msg = _refused(name, agent, ds, monkeypatch, **{param: bad})
        assert param in msg, msg


def test_bounds_come_from_the_data_and_the_agent():
    agent, ds = _pair("attention_map")
    assert catalog.bounds("attention_map", "episode", agent, ds)[:2] == (0, ds.n_episodes - 1)
    assert catalog.bounds("attention_map", "step", agent, ds, episode=1)[:2] == (0, int(ds.episode_lengths[1]) - 1)
    assert catalog.bounds("attention_map", "layer", agent, ds)[:2] == (-3, 2)   # cartpole-dt: 3 layers, % wraps
    assert catalog.bounds("episode_video", "fps", agent, ds) == (1, 60, False)
    assert catalog.bounds("episode_video", "seed", agent, None)[:2] == (0, 2**32 - 1)
    with pytest.raises(ValueError, match=r"^episode 220 is out of range: cartpole.npz has 220 episodes \(0 to 219\)\.$"):
        catalog.make("attention_map", agent, ds, episode=220)


def test_a_sweep_runs_at_most_256_episodes(monkeypatch):
    agent, ds = _pair("rtg_sweep_returns")
    catalog.check_params("rtg_sweep_returns", agent, ds, targets=[100.0] * 4, episodes=64)
    msg = _refused("rtg_sweep_returns", agent, ds, monkeypatch, targets=[100.0] * 5, episodes=64)
    assert msg == "targets x episodes must be at most 256 runs, got 5 x 64 = 320."


@pytest.mark.parametrize("fmt", ["gif", "mp4"])
def test_cli_refuses_fps_1e_minus_300_with_one_line(fmt, tmp_path):
    out = tmp_path / f"x.{fmt}"
    r = subprocess.run([sys.executable, "cli.py", "export", "--figure", "episode_video", "--agent",
                        str(AGENTS / "cartpole-dt"), "--param", "fps=1e-300", "--param", "steps=5", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "error: figure 'episode_video': parameter fps must be between 1 and 60, got 1e-300."
    assert "Traceback" not in r.stderr and not out.exists()


@pytest.mark.parametrize("param, words", [
    ("fps=61", "parameter fps must be between 1 and 60, got 61."),
    ("fps=0.5", "parameter fps must be between 1 and 60, got 0.5."),
    ("width=100000", "parameter width must be a whole number between 8 and 1920, got 100000."),
    ("seed=-1", "parameter seed must be a whole number between 0 and 4294967295, got -1."),
    ("seed=4294967296", "parameter seed must be a whole number between 0 and 4294967295, got 4294967296."),
    ("max_frames=1e9", "parameter max_frames must be a whole number between 1 and 2000, got 1000000000.0."),
    ("start=500", "start 500 is out of range: episode 0 has 500 steps (0 to 499)."),
])
def test_cli_video_parameters_past_their_bounds_are_one_line(param, words, tmp_path, capsys):
    from cli import main

    out = tmp_path / "x.gif"
    assert main(["export", "--figure", "episode_video", "--data", str(DATA / "cartpole.npz"), "--param", param,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: figure 'episode_video': {words}" and not out.exists()


def test_encode_refuses_a_frame_rate_ffmpeg_would_write_as_zero():
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    for fmt in ("gif", "mp4"):
        with pytest.raises(V.VideoError, match=r"^frame rate must be between 0.0625 and 1000 frames per second, got "
                                               r"1e-300\.$"):
            V.encode(frames, fmt, 1e-300)
    assert len(V.encode(frames, "gif", V.MIN_ENCODE_FPS)) > 0


@pytest.mark.parametrize("kw, words", [
    ({"width": 1e-300}, "image width must be between 16 and 8192 pixels, got 1e-300."),
    ({"height": 10**6}, "image height must be between 16 and 8192 pixels, got 1000000."),
    ({"width": float("nan")}, "image width must be between 16 and 8192 pixels, got nan."),
    ({"scale": 0}, "image scale must be between 0.1 and 8, got 0."),
    ({"scale": 1e9}, "image scale must be between 0.1 and 8, got 1000000000.0."),
])
def test_image_export_sizes_are_range_checked_before_rendering(kw, words, monkeypatch):
    import plotly.graph_objects as go
    import plotly.io as pio

    from analysis.publish import export
    monkeypatch.setattr(pio, "to_image", lambda *a, **k: pytest.fail("rendered"))
    with pytest.raises(ValueError) as e:
        export.figure_bytes(go.Figure(), "png", **kw)
    assert str(e.value) == words
