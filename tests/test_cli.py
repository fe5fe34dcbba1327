"""cli.py inspect / convert: the JSON keys of DESIGN.md, exact conversions, one-line errors."""
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
