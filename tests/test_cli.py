"""cli.py inspect / convert: the JSON keys of docs/ARCHITECTURE.md ("CLI JSON"), exact conversions, one-line errors."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trajectories import load_dataset, save_dataset

ROOT = Path(__file__).resolve().parent.parent
INSPECT_KEYS = {"format", "n_episodes", "n_transitions", "obs_dim", "act_dim", "n_actions", "return_mean", "return_min", "return_max"}


def cli(*args):
    return subprocess.run([sys.executable, "cli.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True)


def test_inspect_json(tiny_discrete, tmp_path):
    save_dataset(tiny_discrete, tmp_path / "d.parquet")
    res = cli("inspect", tmp_path / "d.parquet", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert INSPECT_KEYS <= set(out)
    assert (out["format"], out["n_episodes"], out["n_transitions"], out["obs_dim"], out["act_dim"], out["n_actions"]) == ("parquet", 3, 9, 2, 1, 2)
    assert (out["return_min"], out["return_mean"], out["return_max"]) == (-1.0, 3.0, 6.0)


def test_inspect_text(tiny_continuous, tmp_path):
    save_dataset(tiny_continuous, tmp_path / "d.npz")
    res = cli("inspect", tmp_path / "d.npz")
    assert res.returncode == 0
    assert "n_episodes" in res.stdout and "episode returns:" in res.stdout and "Pendulum-v1" in res.stdout


@pytest.mark.parametrize("out_ext", [".npz", ".parquet", ".csv", ".json", ".hdf5"])
def test_convert_every_writer(out_ext, tiny_discrete, tmp_path):
    save_dataset(tiny_discrete, tmp_path / "in.npz")
    res = cli("convert", tmp_path / "in.npz", tmp_path / f"out{out_ext}", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["n_transitions"] == 9
    back = load_dataset(tmp_path / f"out{out_ext}")
    np.testing.assert_array_equal(back.observations, tiny_discrete.observations)
    np.testing.assert_array_equal(back.episode_starts, tiny_discrete.episode_starts)
    np.testing.assert_array_equal(back.actions, tiny_discrete.actions)


def test_convert_refuses_to_overwrite_and_bad_suffix(tiny_discrete, tmp_path):
    save_dataset(tiny_discrete, tmp_path / "in.npz")
    (tmp_path / "out.csv").write_text("keep me")
    res = cli("convert", tmp_path / "in.npz", tmp_path / "out.csv")
    assert res.returncode == 2 and "already exists; pass --force" in res.stderr
    assert (tmp_path / "out.csv").read_text() == "keep me"
    res = cli("convert", tmp_path / "in.npz", tmp_path / "out.xlsx")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "expected an output ending in" in res.stderr


def test_usage_errors_are_one_line():
    for args in (["frobnicate"], ["inspect"], ["make-data", "--env", "cartpole"], ["make-data", "--env", "doom", "--episodes", "3", "--out", "x.npz"]):
        res = cli(*args)
        assert res.returncode == 2, args
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


# ---- export -------------------------------------------------------------------------------------------
CARTPOLE = ROOT / "sample_data" / "datasets" / "cartpole.npz"
CARTPOLE_DT = ROOT / "sample_data" / "agents" / "cartpole-dt"


def test_export_lists_every_figure():
    res = cli("export", "--list", "--json")
    assert res.returncode == 0, res.stderr
    names = {f["name"] for f in json.loads(res.stdout)["figures"]}
    assert {"returns_histogram", "attention_map", "attention_episode", "rtg_sweep_returns", "rtg_shift_replay",
            "tt_attention"} <= names


def test_export_headless_svg_with_params_and_default_dataset(tmp_path):
    out = tmp_path / "att.svg"
    res = cli("export", "--agent", CARTPOLE_DT, "--figure", "attention_episode", "--param", "episode=3", "--format", "svg",
              "--out", out, "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["data"].endswith("cartpole.npz") and got["params"]["episode"] == 3      # the agent's own dataset
    assert out.read_bytes().lstrip().startswith(b"<svg")
    csv = tmp_path / "att.csv"
    assert cli("export", "--agent", CARTPOLE_DT, "--data", CARTPOLE, "--figure", "attention_steps_back", "--out", csv).returncode == 0
    assert csv.read_text().splitlines()[0] == "layer,head,steps_back,share"


@pytest.mark.parametrize("args, message", [
    (["--figure", "nope", "--out", "x.png"], "unknown figure 'nope'"),
    (["--figure", "attention_map", "--data", str(CARTPOLE), "--out", "x.png"], "needs an agent"),
    (["--figure", "returns_histogram", "--data", str(CARTPOLE), "--param", "colour=red", "--out", "x.png"], "takes bins; not colour"),
    (["--figure", "returns_histogram", "--data", str(CARTPOLE), "--out", "x.gif"], "expected one of png"),
    (["--figure", "returns_histogram", "--out", "x.png"], "needs a dataset"),
    (["--figure", "attention_map", "--agent", str(CARTPOLE_DT), "--data", str(ROOT / "sample_data/datasets/pendulum.npz"),
      "--out", "x.png"], "observation features but the dt agent expects 4"),
    (["--figure", "tt_attention", "--agent", str(CARTPOLE_DT), "--out", "x.png"], "needs a Trajectory Transformer"),
])
def test_export_errors_are_one_sentence(args, message, tmp_path):
    res = cli("export", *args)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and message in res.stderr, res.stderr
