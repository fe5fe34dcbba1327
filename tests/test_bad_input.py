"""Bad input: every case gets one sentence naming the file and the problem, never a traceback."""
import io
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

from trajectories import DatasetError, load_dataset, save_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(path, content):
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _truncated_h5(tmp_path, tiny):
    save_dataset(tiny, tmp_path / "full.hdf5")
    data = (tmp_path / "full.hdf5").read_bytes()
    return _write(tmp_path / "cut.hdf5", data[: len(data) // 2])


def _zero_step_minari(tmp_path, tiny):
    path = tmp_path / "main_data.hdf5"
    with h5py.File(path, "w") as f:
        for i, t in enumerate((3, 0)):
            g = f.create_group(f"episode_{i}")
            g["observations"] = np.zeros((t + 1, 2), np.float32)
            g["actions"] = np.zeros(t, np.int64)
            g["rewards"] = np.zeros(t)
            g["terminations"] = np.zeros(t, bool)
            g["truncations"] = np.zeros(t, bool)
    return path


def _escaping_zip(tmp_path, tiny):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("../../etc/cron.d/x", "boom")
        zf.writestr("ds/data/main_data.hdf5", b"")
    return path


def _not_minari_dir(tmp_path, tiny):
    d = tmp_path / "somedir"
    d.mkdir()
    (d / "notes.txt").write_text("hello")
    return d


def _pickled_npz(tmp_path, tiny):
    path = tmp_path / "obj.npz"
    np.savez(path, observations=np.array([object(), object()], dtype=object), actions=[0, 1], rewards=[0, 1])
    return path


HEADER = "episode,step,obs_0,obs_1,action,reward,terminated\n"
CASES = {
    # name: (file maker, expected fragment of the message)
    "truncated hdf5": (_truncated_h5, "cut.hdf5 is not a readable HDF5 file (truncated or corrupt"),
    "random hdf5": (lambda p, t: _write(p / "r.hdf5", os.urandom(4096)), "r.hdf5 is not a readable HDF5 file"),
    "random npz": (lambda p, t: _write(p / "r.npz", os.urandom(4096)), "r.npz is not a valid .npz archive"),
    "random parquet": (lambda p, t: _write(p / "r.parquet", os.urandom(4096)), "r.parquet is not a readable parquet file"),
    "random zip": (lambda p, t: _write(p / "r.zip", os.urandom(4096)), "r.zip is not a valid zip file"),
    "random csv": (lambda p, t: _write(p / "r.csv", bytes(range(256)) * 8), "r.csv"),
    "random json": (lambda p, t: _write(p / "r.json", os.urandom(512)), "r.json is not a text JSON file"),
    "empty csv": (lambda p, t: _write(p / "e.csv", b""), "e.csv is empty (0 bytes)"),
    "empty npz": (lambda p, t: _write(p / "e.npz", b""), "e.npz is empty (0 bytes)"),
    "header only csv": (lambda p, t: _write(p / "h.csv", HEADER), "h.csv has no rows"),
    "csv nan reward": (lambda p, t: _write(p / "run.csv", HEADER + "0,0,1,2,0,1,0\n0,1,1,2,0,nan,1\n"),
                       "reward has a missing value (NaN) at row 2 (line 3 counting the header) of run.csv"),
    "csv inf obs": (lambda p, t: _write(p / "run.csv", HEADER + "0,0,1,inf,0,1,0\n"), "obs_1 has inf at row 1"),
    "csv empty cell": (lambda p, t: _write(p / "run.csv", HEADER + "0,0,1,,0,1,0\n"), "obs_1 has a missing value (NaN) at row 1"),
    "csv text in obs": (lambda p, t: _write(p / "run.csv", HEADER + "0,0,1,abc,0,1,0\n"), "obs_1 is not a number at row 1"),
    "csv no reward": (lambda p, t: _write(p / "run.csv", "episode,obs_0,action\n0,1,1\n"), "run.csv has no reward column"),
    "csv no obs": (lambda p, t: _write(p / "run.csv", "episode,action,reward\n0,1,1\n"), "run.csv has no observation columns"),
    "csv no action": (lambda p, t: _write(p / "run.csv", "episode,obs_0,reward\n0,1,1\n"), "run.csv has no action column"),
    "csv bad flag": (lambda p, t: _write(p / "run.csv", HEADER + "0,0,1,2,0,1,7\n"), "terminated must be true/false or 0/1, got another number at row 1"),
    "csv ragged rows": (lambda p, t: _write(p / "run.csv", HEADER + "0,0,1,2,0,1,0\n0,1,1,2,3,0,1,0\n"),
                        "run.csv: line 3 has 8 fields but the header has 7 (ragged rows)"),
    "csv ragged list": (lambda p, t: _write(p / "run.csv", 'obs,action,reward\n"[1, 2]",0,1\n"[1, 2, 3]",0,1\n'),
                        "obs has 3 values at row 2 (line 3 counting the header) but 2 at row 1"),
    "csv duplicate step": (lambda p, t: _write(p / "run.csv", HEADER + "0,0,1,2,0,1,0\n0,0,1,2,0,1,0\n"), "run.csv: episode 1 of 1 (counting in id order) has one step number twice"),
    "json not records": (lambda p, t: _write(p / "run.json", "[1, 2, 3]"), "run.json must hold one JSON object per step"),
    "json ragged columns": (lambda p, t: _write(p / "run.json", '{"obs_0": [1, 2], "action": [0], "reward": [1, 1]}'),
                            "run.json: the column lists have different lengths"),
    "json nan": (lambda p, t: _write(p / "run.json", '[{"obs_0": 1, "action": 0, "reward": NaN}]'), "reward has a missing value (NaN) at row 1 of run.json"),
    "npz mismatched lengths": (lambda p, t: _npz(p / "m.npz", observations=np.zeros((5, 2)), actions=np.zeros(4, int), rewards=np.zeros(5)),
                               "m.npz: actions has 4 rows but observations has 5"),
    "npz zero-length episode": (lambda p, t: _npz(p / "z.npz", observations=np.zeros((5, 2)), actions=np.zeros(5, int), rewards=np.zeros(5),
                                                  episode_starts=[0, 2, 2]), "z.npz: episode 1 has zero length"),
    "npz missing rewards": (lambda p, t: _npz(p / "m.npz", observations=np.zeros((5, 2)), actions=np.zeros(5)), "m.npz has no rewards array"),
    "npz ragged obs": (lambda p, t: _npz(p / "r.npz", observations=np.zeros((5, 2, 2, 2, 2)), actions=np.zeros(5), rewards=np.zeros(5)),
                       "r.npz: observations must be a 2-D array"),
    "npz object array": (_pickled_npz, "obj.npz: array 'observations' holds Python objects, which could only be read with pickle"),
    "npz nan obs": (lambda p, t: _npz(p / "n.npz", observations=np.array([[0.0], [np.nan]]), actions=[0, 1], rewards=[0, 1]),
                    "n.npz: observations has NaN at row 1"),
    "minari zero-step episode": (_zero_step_minari, "main_data.hdf5: episode_1 has zero steps"),
    "hdf5 neither layout": (lambda p, t: _h5(p / "o.hdf5", foo=np.zeros(3)), "o.hdf5 is neither a Minari file"),
    "d4rl mismatched lengths": (lambda p, t: _h5(p / "d.hdf5", observations=np.zeros((5, 2)), actions=np.zeros((5, 1)), rewards=np.zeros(4),
                                                 terminals=np.zeros(5)), "d.hdf5: arrays have mismatched lengths"),
    "not a minari dir": (_not_minari_dir, "somedir is not a Minari dataset directory"),
    "zip escaping paths": (_escaping_zip, "evil.zip contains a path outside its folder (../../etc/cron.d/x)"),
    "unknown extension": (lambda p, t: _write(p / "x.txt", "hi"), "x.txt: unknown file type '.txt'"),
    "missing file": (lambda p, t: p / "nope.npz", "nope.npz does not exist"),
}


def _h5(path, **arrays):
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f[k] = v
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_one_clear_sentence(case, tmp_path, tiny_discrete):
    make, expected = CASES[case]
    path = make(tmp_path, tiny_discrete)
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    msg = str(err.value)
    assert expected in msg
    assert "\n" not in msg and "Traceback" not in msg and len(msg) < 400


@pytest.mark.parametrize("case", ["csv nan reward", "zip escaping paths", "random hdf5", "missing file"])
def test_cli_reports_one_line_and_exit_2(case, tmp_path, tiny_discrete):
    make, expected = CASES[case]
    path = make(tmp_path, tiny_discrete)
    for argv in (["inspect", str(path)], ["inspect", str(path), "--json"], ["convert", str(path), str(tmp_path / "o.npz")]):
        res = subprocess.run([sys.executable, "cli.py", *argv], cwd=ROOT, capture_output=True, text=True)
        assert res.returncode == 2, res.stderr
        assert res.stdout == ""
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], res.stderr


def test_zip_escape_never_writes(tmp_path, tiny_discrete):
    _escaping_zip(tmp_path, tiny_discrete)
    with pytest.raises(DatasetError):
        load_dataset(tmp_path / "evil.zip")
    assert not (tmp_path.parent.parent / "etc").exists()


def test_bad_npz_key_variant_does_not_mask_metadata(tmp_path):
    buf = io.BytesIO()
    np.savez(buf, observations=np.zeros((2, 1)), actions=[0, 1], rewards=[0, 1], seqlens_meta=np.array("{not json"))
    _write(tmp_path / "meta.npz", buf.getvalue())
    with pytest.raises(DatasetError, match="seqlens_meta entry is not valid JSON"):
        load_dataset(tmp_path / "meta.npz")
