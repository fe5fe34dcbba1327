"""Hostile uploads (bench/hostile_data.py): each is refused with one sentence that says what was expected,
before anything large is allocated, and nothing from another file on the server ever shows up."""
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.hostile_data import SECRET, hostile_dataset_files
from trajectories import Dataset, DatasetError, load_dataset, save_dataset

ROOT = Path(__file__).resolve().parent.parent
with tempfile.TemporaryDirectory() as _tmp:
    NAMES = [f["name"] for f in hostile_dataset_files(_tmp)]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return {f["name"]: f for f in hostile_dataset_files(tmp_path_factory.mktemp("hostile"))}


@pytest.mark.parametrize("name", NAMES)
def test_refused_with_one_sentence(name, hostile):
    case = hostile[name]
    with pytest.raises(DatasetError) as err:
        load_dataset(case["path"])
    msg = str(err.value)
    assert case["expect"] in msg.lower(), msg
    assert "\n" not in msg and msg.endswith(".") and case["path"].name in msg
    if case["secret"]:
        assert case["secret"].decode() not in msg


@pytest.mark.parametrize("name", NAMES)
def test_cli_inspect_one_line_exit_2(name, hostile):
    case = hostile[name]
    res = subprocess.run([sys.executable, "cli.py", "inspect", str(case["path"])], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and case["expect"] in lines[0].lower(), res.stderr
    both = res.stdout + res.stderr
    assert "Traceback" not in both and "Warning" not in both
    assert SECRET.decode() not in both


def test_secret_is_really_reachable_by_plain_h5py(hostile):
    """The files are truly hostile: h5py alone follows them to the secret."""
    with h5py.File(hostile["hdf5_external_storage"]["path"]) as f:
        assert f["observations"][()].tobytes() == SECRET


def test_limits_follow_the_environment(tmp_path, monkeypatch, tiny_discrete):
    save_dataset(tiny_discrete, tmp_path / "d.npz")
    monkeypatch.setenv("SEQLENS_MAX_DECODE_BYTES", "100")
    with pytest.raises(DatasetError, match=r"d.npz declares .*SEQLENS_MAX_DECODE_BYTES\)\.$"):
        load_dataset(tmp_path / "d.npz")
    monkeypatch.setenv("SEQLENS_MAX_DECODE_BYTES", "100000")
    monkeypatch.setenv("SEQLENS_MAX_TRANSITIONS", "5")
    for ext in (".npz", ".parquet", ".csv", ".hdf5"):
        save_dataset(tiny_discrete, tmp_path / f"d{ext}")
        with pytest.raises(DatasetError, match="SEQLENS_MAX_TRANSITIONS"):
            load_dataset(tmp_path / f"d{ext}")
    monkeypatch.setenv("SEQLENS_MAX_TRANSITIONS", "100")
    monkeypatch.setenv("SEQLENS_MAX_ACTIONS", "1")
    with pytest.raises(DatasetError, match="SEQLENS_MAX_ACTIONS"):
        load_dataset(tmp_path / "d.npz")


def test_parquet_dictionary_strings_stay_encoded(tmp_path, monkeypatch):
    """Long repeated strings in an id column and a flag column: read per distinct value, not per row."""
    n, long_id = 200_000, "episode-" + "x" * 10_000
    table = pa.table({"episode": pa.array([long_id] * n).dictionary_encode(), "obs_0": np.arange(n, dtype=np.float32),
                      "action": np.zeros(n, np.int64), "reward": np.ones(n, np.float32),
                      "done": pa.array(["false"] * (n - 1) + ["true"]).dictionary_encode()})
    pq.write_table(table, tmp_path / "long_ids.parquet")  # 2 GB of strings if decoded row by row
    ds = load_dataset(tmp_path / "long_ids.parquet")
    assert ds.n_episodes == 1 and ds.metadata["episode_ids"] == [long_id] and ds.terminated[-1]
    monkeypatch.setenv("SEQLENS_MAX_DECODE_BYTES", str(2_000_000))
    with pytest.raises(DatasetError, match="SEQLENS_MAX_DECODE_BYTES"):
        load_dataset(tmp_path / "long_ids.parquet")


def test_honest_too_many_npz_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLENS_MAX_ZIP_ENTRIES", "4")
    np.savez(tmp_path / "e.npz", observations=np.zeros((2, 1)), actions=[0, 1], rewards=[0, 1], a=1, b=2)
    with pytest.raises(DatasetError, match="declares 5 zip entries; the limit is 4 entries per zip"):
        load_dataset(tmp_path / "e.npz")


def test_hard_link_cycle_and_shared_groups_are_fine(tmp_path):
    path = tmp_path / "cycle.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = np.arange(6, dtype=np.float32).reshape(3, 2)
        f["actions"] = np.array([0, 1, 0])
        f["rewards"] = np.ones(3, np.float32)
        f["terminals"] = np.array([0, 0, 1], bool)
        g = f.create_group("extra")
        g["loop"] = g  # a hard-link cycle
        f["alias"] = f["observations"]  # a second hard link to a dataset
    ds = load_dataset(path)
    np.testing.assert_array_equal(ds.observations, np.arange(6).reshape(3, 2))


def _d4rl_infos(path, make_qpos):
    """A 4-step D4RL file whose infos/qpos make_qpos(f) writes (infos/qvel is fine)."""
    with h5py.File(path, "w") as f:
        f["observations"] = np.zeros((4, 3), np.float32)
        f["actions"] = np.zeros((4, 2), np.float32)
        f["rewards"] = np.ones(4, np.float32)
        f["timeouts"] = np.array([0, 0, 0, 1], bool)
        f["infos/qvel"] = np.zeros((4, 2))
        make_qpos(f)
    return path


def _nan(f):
    f["infos/qpos"] = np.zeros((4, 2))
    f["infos/qpos"][2, 1] = np.nan


def _refused(path, peak_mib: int) -> str:
    """load_dataset's one sentence for a hostile file, read under peak_mib MiB of Python allocations."""
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    msg = str(err.value)
    assert msg.endswith(".") and "\n" not in msg, msg
    assert peak < peak_mib * 2**20
    return msg


@pytest.mark.parametrize("make, fragment", [
    (lambda f: f.__setitem__("infos/qpos", np.zeros((5, 2))), "one row per observation (4) and 1 to 1,000 columns, got shape (5, 2)"),
    (lambda f: f.create_dataset("infos/qpos", shape=(4, 10**9), dtype="f8"), "got shape (4, 1000000000)"),   # 32 GB declared
    (lambda f: f.create_dataset("infos/qpos", shape=(10**9, 2), dtype="f8"), "got shape (1000000000, 2)"),
    (lambda f: f.__setitem__("infos/qpos", np.zeros((4, 2), np.int64)), "got shape (4, 2) of int64"),
    (lambda f: f.__setitem__("infos/qpos", np.zeros(4)), "got shape (4,) of float64"),
    (lambda f: f.create_group("infos/qpos"), "got a group"),
    (_nan, "infos/qpos has NaN or inf at row 2"),
    (lambda f: f.__setitem__("infos/qpos", h5py.SoftLink("/observations")), "/infos/qpos is a soft link"),
])
def test_d4rl_hostile_infos_qpos_is_one_sentence_before_allocating(make, fragment, tmp_path):
    path = _d4rl_infos(tmp_path / "q.hdf5", make)
    assert path.stat().st_size < 100_000
    msg = _refused(path, 10)
    assert fragment in msg and msg.startswith("q.hdf5"), msg


def test_d4rl_infos_qpos_in_external_storage_is_never_read(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET + bytes(64))
    path = _d4rl_infos(tmp_path / "x.hdf5", lambda f: f.create_dataset(
        "infos/qpos", shape=(4, 2), dtype="f8", external=[(str(secret), 0, 64)]))
    with pytest.raises(DatasetError, match="infos/qpos keeps its data in an external file") as err:
        load_dataset(path)
    assert SECRET.decode() not in str(err.value)


def _npz_declaring_huge_qpos(path):
    """An npz whose infos/qpos .npy header declares 32 GB ([4, 10^9] float64) over 16 bytes of data."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros((4, 2)))
    header["shape"] = (4, 10**9)
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, header)
    with zipfile.ZipFile(path, "w") as zf:
        for key, arr in (("observations", np.zeros((4, 2))), ("actions", np.zeros(4, int)), ("rewards", np.ones(4)),
                         ("infos/qvel", np.zeros((4, 2)))):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr)
            zf.writestr(f"{key}.npy", buf.getvalue())
        zf.writestr("infos/qpos.npy", member.getvalue() + bytes(16))


def _parquet_with_string_qpos(path):
    """qpos_0 as 200,000 dictionary-encoded 10 KB strings: 2 GB if decoded row by row."""
    n = 200_000
    pq.write_table(pa.table({"obs_0": np.zeros(n, np.float32), "action": np.zeros(n, np.int64),
                             "reward": np.ones(n, np.float32), "qpos_0": pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), ["1" * 10_000]),
                             "qvel_0": np.zeros(n)}), path)


def _parquet_with_wide_qpos(path):
    cols = {"obs_0": np.zeros(2, np.float32), "action": np.zeros(2, np.int64), "reward": np.ones(2, np.float32),
            "qvel_0": np.zeros(2)}
    cols.update({f"qpos_{j}": np.zeros(2) for j in range(5_000)})
    pq.write_table(pa.table(cols), path)


@pytest.mark.parametrize("make, filename, fragment", [
    (_npz_declaring_huge_qpos, "q.npz", "q.npz: array 'infos/qpos' is truncated or corrupt (its header declares 32,000,000,000 bytes"),
    (_parquet_with_string_qpos, "q.parquet", "q.parquet: column qpos_0 has type dictionary<values=string"),
    (_parquet_with_wide_qpos, "w.parquet", "w.parquet: the qpos columns must be numbered qpos_0, qpos_1, ... with none "
                                           "missing or repeated, 1 to 1,000 of them; got 5,000"),
])
def test_hostile_infos_in_npz_and_tables_refused_before_reading(make, filename, fragment, tmp_path):
    path = tmp_path / filename
    make(path)
    msg = _refused(path, 20)
    assert msg.startswith(fragment), msg


@pytest.mark.parametrize("meta, fragment", [('"x"', "must be a JSON object, got a string"),
                                            ('{"metadata": [1]}', "metadata that is not an object"),
                                            ('{"env_id": 5}', "env_id that is not a string or null"),
                                            ('{"n_actions": true}', "whole number"),
                                            ('{"n_actions": 0}', "at least 1")])
def test_npz_meta_types(meta, fragment, tmp_path):
    np.savez(tmp_path / "m.npz", observations=np.zeros((2, 1)), actions=[0, 1], rewards=[0, 1], seqlens_meta=np.array(meta))
    with pytest.raises(DatasetError, match=fragment):
        load_dataset(tmp_path / "m.npz")


@pytest.mark.parametrize("lengths, fragment", [([2, 3], "sum to 5 but there are 6 steps"), ([0, 6], "must be positive"),
                                               ([np.nan, 6], "whole numbers")])
def test_npz_episode_lengths(lengths, fragment, tmp_path):
    np.savez(tmp_path / "l.npz", observations=np.zeros((6, 1)), actions=np.zeros(6, int), rewards=np.ones(6), episode_lengths=lengths)
    with pytest.raises(DatasetError, match=fragment):
        load_dataset(tmp_path / "l.npz")


def test_npz_float64_beyond_float32(tmp_path):
    np.savez(tmp_path / "b.npz", observations=np.array([[0.0], [1e300]]), actions=[0, 1], rewards=[0, 1])
    with pytest.raises(DatasetError, match=r"observations has a value beyond the float32 range \(about ±3.4e38\) at row 1"):
        load_dataset(tmp_path / "b.npz")


def test_dataset_refuses_bad_n_actions():
    args = (np.zeros((2, 1)), np.array([0, 1]), np.zeros(2), np.zeros(2), np.zeros(2), [0])
    for bad, fragment in ((2.5, "whole number"), ("3", "whole number"), (True, "whole number"), (0, "at least 1"),
                          (10**12, "SEQLENS_MAX_ACTIONS")):
        with pytest.raises(DatasetError, match=fragment):
            Dataset(*args, n_actions=bad)
    assert Dataset(*args, n_actions=np.int64(3)).n_actions == 3


def test_dataset_refuses_infos_that_are_not_per_step_numbers():
    args = (np.zeros((2, 1)), np.array([0, 1]), np.zeros(2), np.zeros(2), np.zeros(2), [0])
    for bad, fragment in (({"qpos": np.zeros((3, 2))}, "infos 'qpos' has 3 rows but observations has 2"),
                          ({"qpos": np.array(["a", "b"])}, "infos 'qpos' must be real numbers"),
                          ([np.zeros(2)], "infos must be a dict")):
        with pytest.raises(DatasetError, match=fragment):
            Dataset(*args, infos=bad)


# ---- legitimate files still read exactly ---------------------------------------------------------

def test_legit_npz_with_grouped_episode_ids(tmp_path):
    np.savez(tmp_path / "g.npz", observations=np.arange(6, dtype=np.float32).reshape(6, 1), actions=[0, 1, 1, 0, 1, 0],
             rewards=np.arange(6, dtype=np.float32), episode=np.array(["b", "b", "a", "a", "a", "c"]))
    ds = load_dataset(tmp_path / "g.npz")
    np.testing.assert_array_equal(ds.episode_starts, [0, 2, 5])
    np.testing.assert_array_equal(ds.episode_returns, [1, 9, 5])


def test_legit_parquet_with_string_episode_ids(tmp_path):
    df = pd.DataFrame({"episode": ["run-b", "run-a", "run-b", "run-a"], "step": [0, 0, 1, 1], "obs_0": [1.0, 2.0, 3.0, 4.0],
                       "action": [0, 1, 1, 0], "reward": [1.0, 2.0, 3.0, 4.0], "done": ["false", "false", "true", "true"]})
    df.to_parquet(tmp_path / "s.parquet")
    ds = load_dataset(tmp_path / "s.parquet")
    assert ds.metadata["episode_ids"] == ["run-a", "run-b"]
    np.testing.assert_array_equal(ds.observations[:, 0], [2, 4, 1, 3])
    np.testing.assert_array_equal(ds.terminated, [False, True, False, True])


def test_legit_minari_hdf5_zip(tmp_path):
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for i, t in enumerate((3, 2)):
            ep = f.create_group(f"episode_{i}")
            ep["observations"] = np.arange((t + 1) * 2, dtype=np.float32).reshape(t + 1, 2) + 10 * i
            ep["actions"] = np.arange(t) % 2
            ep["rewards"] = np.ones(t, np.float32) * (i + 1)
            ep["terminations"] = np.eye(1, t, t - 1, dtype=bool)[0]
            ep["truncations"] = np.zeros(t, bool)
    with zipfile.ZipFile(tmp_path / "m.zip", "w") as zf:
        zf.writestr("ds/data/main_data.hdf5", buf.getvalue())
        zf.writestr("ds/data/metadata.json", '{"env_spec": "{\\"id\\": \\"CartPole-v1\\"}", "action_space": "{\\"type\\": \\"Discrete\\", \\"n\\": 2}"}')
    ds = load_dataset(tmp_path / "m.zip")
    assert ds.env_id == "CartPole-v1" and ds.n_actions == 2
    np.testing.assert_array_equal(ds.episode_returns, [3, 4])
    np.testing.assert_array_equal(ds.observations[3], [10, 11])
