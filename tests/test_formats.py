"""Every reader and writer: known counts, exact round trips, detected column spellings, Minari, D4RL."""
import json
import zipfile

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trajectories import Dataset, load_dataset, save_dataset


def assert_same_arrays(a: Dataset, b: Dataset):
    for key in ("observations", "actions", "rewards", "terminated", "truncated", "episode_starts"):
        x, y = getattr(a, key), getattr(b, key)
        assert x.dtype == y.dtype, key
        np.testing.assert_array_equal(x, y, err_msg=key)


@pytest.mark.parametrize("ext", [".npz", ".parquet"])
@pytest.mark.parametrize("which", ["tiny_discrete", "tiny_continuous"])
def test_exact_round_trip(ext, which, request, tmp_path):
    ds = request.getfixturevalue(which)
    ds.metadata["epsilon"] = [0.1, 0.2]
    save_dataset(ds, tmp_path / f"d{ext}")
    back = load_dataset(tmp_path / f"d{ext}")
    assert back.equals(ds)
    assert back.metadata["epsilon"] == [0.1, 0.2]
    assert back.metadata["format"] == ext[1:]


@pytest.mark.parametrize("ext", [".csv", ".json"])
@pytest.mark.parametrize("which", ["tiny_discrete", "tiny_continuous"])
def test_text_round_trip_keeps_values_and_names(ext, which, request, tmp_path):
    ds = request.getfixturevalue(which)
    save_dataset(ds, tmp_path / f"d{ext}")
    back = load_dataset(tmp_path / f"d{ext}")
    assert_same_arrays(ds, back)  # float32 survives the text format bit for bit
    assert back.obs_names == ds.obs_names and back.act_names == ds.act_names


def test_d4rl_round_trip(tiny_discrete, tmp_path):
    save_dataset(tiny_discrete, tmp_path / "d.hdf5")
    back = load_dataset(tmp_path / "d.hdf5")
    assert back.metadata["format"] == "d4rl-hdf5" and back.env_id == "CartPole-v1"
    np.testing.assert_array_equal(back.episode_starts, [0, 3, 7])
    np.testing.assert_array_equal(back.observations, tiny_discrete.observations)
    np.testing.assert_array_equal(back.episode_returns, [6, 4, -1])


def test_d4rl_known_counts(tmp_path):
    # 10 steps: terminal after step 2, timeout after step 6, last episode has no flag
    with h5py.File(tmp_path / "hopper.hdf5", "w") as f:
        f["observations"] = np.arange(30, dtype=np.float32).reshape(10, 3)
        f["actions"] = np.ones((10, 2), np.float32)
        f["rewards"] = np.arange(10, dtype=np.float32)
        f["terminals"] = np.eye(1, 10, 2)[0]
        f["timeouts"] = np.eye(1, 10, 6)[0]
        f["next_observations"] = np.zeros((10, 3))
    ds = load_dataset(tmp_path / "hopper.hdf5")
    np.testing.assert_array_equal(ds.episode_lengths, [3, 4, 3])
    np.testing.assert_array_equal(ds.episode_returns, [3, 18, 24])
    assert ds.act_dim == 2 and not ds.discrete
    assert ds.infos == {} and ds.content_key() == ds.fingerprint()   # no infos: keys as before


def _d4rl_with_infos(path, qpos_rows=10, qvel=True, seed=0):
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(10, 3)).astype(np.float32)
        f["actions"] = rng.normal(size=(10, 2)).astype(np.float32)
        f["rewards"] = np.ones(10, np.float32)
        f["terminals"] = np.eye(1, 10, 3)[0]
        f["timeouts"] = np.eye(1, 10, 9)[0]
        f["infos/qpos"] = rng.normal(size=(qpos_rows, 4))
        if qvel:
            f["infos/qvel"] = rng.normal(size=(10, 5)).astype(np.float32)
        f["infos/goal"] = np.zeros((10, 2))     # other infos are not read
    return path


def test_d4rl_infos_qpos_qvel_are_kept_selected_keyed_and_round_trip(tmp_path):
    from analysis.core.identity import dataset_key, stamp_dataset

    ds = load_dataset(_d4rl_with_infos(tmp_path / "a.hdf5"))
    with h5py.File(tmp_path / "a.hdf5") as f:
        qpos, qvel = f["infos/qpos"][()], f["infos/qvel"][()]
    assert sorted(ds.infos) == ["qpos", "qvel"]
    assert ds.infos["qpos"].dtype == np.float64 and ds.infos["qvel"].dtype == np.float32
    np.testing.assert_array_equal(ds.infos["qpos"], qpos)
    np.testing.assert_array_equal(ds.infos["qvel"], qvel)
    # select keeps each episode's rows (episode 1 is steps 4..9)
    one = ds.select([1])
    np.testing.assert_array_equal(one.infos["qpos"], qpos[4:])
    np.testing.assert_array_equal(one.infos["qvel"], qvel[4:])
    # the writer writes them back: an exact round trip
    save_dataset(ds, tmp_path / "back.hdf5")
    back = load_dataset(tmp_path / "back.hdf5")
    assert back.equals(ds) and back.infos["qvel"].dtype == np.float32
    np.testing.assert_array_equal(back.infos["qpos"], qpos)
    with h5py.File(tmp_path / "back.hdf5") as f:
        assert sorted(f["infos"]) == ["qpos", "qvel"]
    # two files differing only in qpos: same training fingerprint, different cache keys
    with h5py.File(tmp_path / "a.hdf5", "a") as f:
        f["infos/qpos"][0, 0] += 1.0
    other = load_dataset(tmp_path / "a.hdf5")
    assert other.fingerprint() == ds.fingerprint() and not other.equals(ds)
    assert dataset_key(other) != dataset_key(ds)
    assert dataset_key(stamp_dataset(other)) != dataset_key(stamp_dataset(ds))


def test_d4rl_mismatched_qpos_rows_is_one_sentence_and_lone_qpos_is_ignored(tmp_path):
    from trajectories import DatasetError

    with pytest.raises(DatasetError) as err:
        load_dataset(_d4rl_with_infos(tmp_path / "short.hdf5", qpos_rows=9))
    assert str(err.value) == ("short.hdf5: infos/qpos must be a 2-D float array with one row per observation (10) and "
                              "1 to 1,000 columns, got shape (9, 4) of float64.")
    # qpos without qvel cannot set a state: the file reads as one without infos
    ds = load_dataset(_d4rl_with_infos(tmp_path / "lone.hdf5", qvel=False))
    assert ds.infos == {} and ds.n_transitions == 10


# ---- infos (qpos / qvel) through every format ------------------------------------------------------

EXTS = [".npz", ".parquet", ".csv", ".json", ".hdf5"]


def _with_states(base: Dataset, seed=0, qpos_dtype=np.float64) -> Dataset:
    """base plus float64 MuJoCo states: qpos [T, 7], qvel [T, 6] (values spanning many magnitudes)."""
    rng = np.random.default_rng(seed)
    n = base.n_transitions
    span = 200 if qpos_dtype == np.float64 else 30   # float32 holds about 1e-38..3e38
    qpos = (rng.normal(size=(n, 7)) * 10.0 ** rng.integers(-span, span, size=(n, 7))).astype(qpos_dtype)
    qvel = rng.normal(size=(n, 6)) / 3
    return Dataset(base.observations, base.actions, base.rewards, base.terminated, base.truncated, base.episode_starts,
                   base.obs_names, base.act_names, base.n_actions, base.env_id, base.source, dict(base.metadata),
                   {"qpos": qpos, "qvel": qvel})


@pytest.mark.parametrize("ext", EXTS)
@pytest.mark.parametrize("which", ["tiny_discrete", "tiny_continuous"])
def test_infos_round_trip_through_every_format(ext, which, request, tmp_path):
    ds = _with_states(request.getfixturevalue(which))
    save_dataset(ds, tmp_path / f"d{ext}")
    back = load_dataset(tmp_path / f"d{ext}")
    assert sorted(back.infos) == ["qpos", "qvel"]
    for k in ("qpos", "qvel"):
        assert back.infos[k].dtype == np.float64, k
        np.testing.assert_array_equal(back.infos[k], ds.infos[k], err_msg=k)
    assert "ignored_columns" not in back.metadata
    assert_same_arrays(ds, back)
    assert back.content_key() == ds.content_key()
    if ext in (".npz", ".parquet"):   # the others keep no names / env id (as before)
        assert back.equals(ds)


@pytest.mark.parametrize("ext", [".npz", ".parquet", ".hdf5"])
def test_infos_float32_stays_float32_in_binary_formats(ext, tiny_continuous, tmp_path):
    ds = _with_states(tiny_continuous, qpos_dtype=np.float32)
    save_dataset(ds, tmp_path / f"d{ext}")
    back = load_dataset(tmp_path / f"d{ext}")
    assert back.infos["qpos"].dtype == np.float32 and back.infos["qvel"].dtype == np.float64
    np.testing.assert_array_equal(back.infos["qpos"], ds.infos["qpos"])


@pytest.mark.parametrize("ext", [".csv", ".json"])
def test_infos_float32_in_text_comes_back_float64_with_the_same_values(ext, tiny_continuous, tmp_path):
    ds = _with_states(tiny_continuous, qpos_dtype=np.float32)
    save_dataset(ds, tmp_path / f"d{ext}")
    back = load_dataset(tmp_path / f"d{ext}")
    assert back.infos["qpos"].dtype == np.float64    # text carries no dtype
    np.testing.assert_array_equal(back.infos["qpos"], ds.infos["qpos"].astype(np.float64))


def test_infos_layout_per_format(tiny_discrete, tmp_path):
    ds = _with_states(tiny_discrete)
    save_dataset(ds, tmp_path / "d.npz")
    with zipfile.ZipFile(tmp_path / "d.npz") as zf:
        assert {"infos/qpos.npy", "infos/qvel.npy"} <= set(zf.namelist())
    save_dataset(ds, tmp_path / "d.parquet")
    table = pq.read_table(tmp_path / "d.parquet")
    assert table.column_names[-13:] == [f"qpos_{j}" for j in range(7)] + [f"qvel_{j}" for j in range(6)]
    assert table.schema.field("qpos_0").type == pa.float64()
    save_dataset(ds, tmp_path / "d.csv")
    header = (tmp_path / "d.csv").read_text().splitlines()[0].split(",")
    assert header[-13:] == table.column_names[-13:]


def test_infos_read_from_other_tools_in_any_column_order(tiny_discrete, tmp_path):
    # np.savez(path, **d4rl_dict) and a hand-made table with shuffled, bracketed columns
    rng = np.random.default_rng(1)
    qpos, qvel = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    np.savez(tmp_path / "d.npz", observations=np.zeros((5, 2)), actions=np.zeros(5, int), rewards=np.ones(5),
             timeouts=[0, 0, 0, 0, 1], **{"infos/qpos": qpos, "infos/qvel": qvel, "infos/goal": np.zeros(5)})
    ds = load_dataset(tmp_path / "d.npz")
    np.testing.assert_array_equal(ds.infos["qpos"], qpos)
    cols = {"reward": np.ones(5), "obs_0": np.zeros(5), "action": np.zeros(5, int), "qvel[1]": qvel[:, 1],
            "qpos_2": qpos[:, 2], "qpos_0": qpos[:, 0], "qvel[0]": qvel[:, 0], "qpos_1": qpos[:, 1]}
    pd.DataFrame(cols).to_csv(tmp_path / "d.csv", index=False)
    back = load_dataset(tmp_path / "d.csv")
    np.testing.assert_array_equal(back.infos["qpos"], qpos)
    np.testing.assert_array_equal(back.infos["qvel"], qvel)


def test_infos_rows_follow_episode_regrouping(tmp_path):
    # rows shuffled across episodes: the reader sorts them, and each state must stay with its step
    df = _long_frame()
    df["qpos_0"], df["qvel_0"] = df["episode_id"] * 100.0 + df["t"], -df["reward"]
    df.to_csv(tmp_path / "s.csv", index=False)
    ds = load_dataset(tmp_path / "s.csv")
    ids = np.repeat(ds.metadata["episode_ids"], ds.episode_lengths)
    np.testing.assert_array_equal(ds.infos["qpos"][:, 0], ids * 100.0 + ds.timesteps)
    np.testing.assert_array_equal(ds.infos["qvel"][:, 0], -ds.rewards)


@pytest.mark.parametrize("ext", EXTS)
def test_no_infos_reads_as_before(ext, tiny_discrete, tmp_path):
    save_dataset(tiny_discrete, tmp_path / f"d{ext}")
    back = load_dataset(tmp_path / f"d{ext}")
    assert back.infos == {} and back.content_key() == back.fingerprint()


@pytest.mark.parametrize("ext", [".npz", ".parquet", ".csv", ".json"])
def test_lone_qpos_is_ignored_as_in_d4rl(ext, tiny_discrete, tmp_path):
    ds = _with_states(tiny_discrete)
    ds.infos.pop("qvel")
    save_dataset(ds, tmp_path / f"d{ext}")   # the writers write the pair only
    assert load_dataset(tmp_path / f"d{ext}").infos == {}
    if ext == ".csv":   # a file holding only qpos columns reads without infos, the columns listed as ignored
        pd.DataFrame({"obs_0": [0.0, 1.0], "action": [0, 1], "reward": [1.0, 1.0], "qpos_0": [0.5, 0.25]}).to_csv(
            tmp_path / "lone.csv", index=False)
        back = load_dataset(tmp_path / "lone.csv")
        assert back.infos == {} and back.metadata["ignored_columns"] == ["qpos_0"]


def _npz_with(path, qpos):
    np.savez(path, observations=np.zeros((4, 2)), actions=np.zeros(4, int), rewards=np.ones(4),
             **{"infos/qpos": qpos, "infos/qvel": np.zeros((4, 2))})
    return path


@pytest.mark.parametrize("qpos, got", [(np.zeros((5, 2)), "got shape (5, 2) of float64"),
                                       (np.zeros((4, 1001)), "got shape (4, 1001) of float64"),
                                       (np.zeros((4, 2), np.int64), "got shape (4, 2) of int64"),
                                       (np.zeros(4), "got shape (4,) of float64")])
def test_npz_bad_infos_is_one_sentence(qpos, got, tmp_path):
    from trajectories import DatasetError

    with pytest.raises(DatasetError) as err:
        load_dataset(_npz_with(tmp_path / "q.npz", qpos))
    assert str(err.value) == ("q.npz: infos/qpos must be a 2-D float array with one row per observation (4) and 1 to "
                              f"1,000 columns, {got}.")
    bad = np.zeros((4, 2))
    bad[3, 0] = np.inf
    with pytest.raises(DatasetError, match=r"^q2.npz: infos/qpos has NaN or inf at row 3\.$"):
        load_dataset(_npz_with(tmp_path / "q2.npz", bad))


def _table(n_qpos=2, rows=3, **extra):
    cols = {"obs_0": np.arange(rows, dtype=np.float64), "action": np.zeros(rows, int), "reward": np.ones(rows)}
    cols.update({f"qpos_{j}": np.full(rows, 0.5 + j) for j in range(n_qpos)})
    cols.update({"qvel_0": np.zeros(rows)}, **extra)
    return pd.DataFrame(cols)


@pytest.mark.parametrize("ext", [".parquet", ".csv", ".json"])
def test_table_bad_infos_columns_are_one_sentence(ext, tmp_path):
    from trajectories import DatasetError

    def write(df, stem):
        path = tmp_path / f"{stem}{ext}"
        if ext == ".parquet":
            df.to_parquet(path)
        elif ext == ".csv":
            df.to_csv(path, index=False)
        else:
            df.to_json(path, orient="records")
        return path

    cases = [(_table().drop(columns="qpos_1").assign(qpos_2=1.0), "gap",
              "the qpos columns must be numbered qpos_0, qpos_1, ... with none missing or repeated, 1 to 1,000 of them; "
              "got 2 (qpos_0, qpos_2)."),
             (_table(n_qpos=1001), "wide", "got 1,001 (qpos_0, qpos_1, qpos_2, qpos_3, qpos_4, ...)."),
             (_table().assign(**{"qpos[1]": 2.0}), "twice", "got 3 (qpos_0, qpos_1, qpos[1])."),
             (_table().assign(qpos_x=2.0), "named", "got 3 (qpos_0, qpos_1, qpos_x).")]
    for df, stem, tail in cases:
        with pytest.raises(DatasetError) as err:
            load_dataset(write(df, stem))
        msg = str(err.value)
        assert msg.startswith(f"{stem}{ext}: ") and msg.endswith(tail) and "\n" not in msg, msg
    # a missing value (a short row) and inf are the row-count / finite checks: one sentence naming the cell
    df = _table()
    df.loc[1, "qpos_1"] = np.nan
    with pytest.raises(DatasetError, match=r"qpos_1 has a missing value"):
        load_dataset(write(df, "hole"))
    if ext != ".json":   # JSON has no inf
        df.loc[1, "qpos_1"] = np.inf
        with pytest.raises(DatasetError, match=r"qpos_1 has inf at row 2"):
            load_dataset(write(df, "inf"))
    if ext == ".parquet":
        with pytest.raises(DatasetError, match=r"^ints.parquet: column qpos_0 has type int64; qpos and qvel columns must be floats\.$"):
            load_dataset(write(_table().assign(qpos_0=np.zeros(3, np.int64)), "ints"))


def test_minari_hdf5_infos_qpos_qvel(tmp_path):
    """A Minari file whose episodes carry infos/qpos, qvel with T+1 rows (the reset's info first)."""
    from trajectories import DatasetError

    def write(path, qvel_rows=None, skip_second=False):
        rng = np.random.default_rng(0)
        states = {}
        with h5py.File(path, "w") as f:
            for i, t in enumerate((3, 2)):
                ep = f.create_group(f"episode_{i}")
                ep["observations"] = rng.normal(size=(t + 1, 2)).astype(np.float32)
                ep["actions"] = np.arange(t) % 2
                ep["rewards"] = np.ones(t, np.float32)
                ep["terminations"] = np.eye(1, t, t - 1, dtype=bool)[0]
                ep["truncations"] = np.zeros(t, bool)
                states[i] = rng.normal(size=(t + 1, 3)), rng.normal(size=(t + 1, 2))
                if not (skip_second and i == 1):
                    ep["infos/qpos"] = states[i][0]
                    ep["infos/qvel"] = states[i][1] if qvel_rows is None else np.zeros((qvel_rows, 2))
                ep["infos/x_position"] = np.zeros(t + 1)
        return states

    states = write(tmp_path / "m.hdf5")
    ds = load_dataset(tmp_path / "m.hdf5")
    np.testing.assert_array_equal(ds.infos["qpos"], np.concatenate([states[0][0][:3], states[1][0][:2]]))
    np.testing.assert_array_equal(ds.infos["qvel"], np.concatenate([states[0][1][:3], states[1][1][:2]]))
    write(tmp_path / "some.hdf5", skip_second=True)   # not every episode has them: none are kept
    assert load_dataset(tmp_path / "some.hdf5").infos == {}
    write(tmp_path / "bad.hdf5", qvel_rows=3)
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path / "bad.hdf5")
    assert str(err.value) == ("bad.hdf5: episode_0/infos/qvel must be a 2-D float array with one row per observation (4) "
                              "and 1 to 1,000 columns, got shape (3, 2) of float64.")


def test_cli_convert_keeps_infos(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    src = load_dataset(_d4rl_with_infos(tmp_path / "hopper-medium-v2.hdf5"))
    prev = tmp_path / "hopper-medium-v2.hdf5"
    for ext in (".npz", ".parquet", ".csv", ".json", ".h5"):
        out = tmp_path / f"step{ext}"
        res = subprocess.run([sys.executable, "cli.py", "convert", str(prev), str(out)], cwd=root, capture_output=True,
                             text=True)
        assert res.returncode == 0, res.stderr
        back = load_dataset(out)
        np.testing.assert_array_equal(back.infos["qpos"], src.infos["qpos"])
        np.testing.assert_array_equal(back.infos["qvel"], src.infos["qvel"])
        prev = out


def _long_frame():
    """Two episodes written by hand in a user's spelling: shuffled rows, episode_id / t / observation_k."""
    rows = []
    for ep, length in ((7, 3), (3, 2)):
        for t in range(length):
            rows.append({"episode_id": ep, "t": t, "observation_0": ep + t / 10, "observation_1": -t,
                         "action": t % 2, "reward": 1.0 + t, "done": t == length - 1, "timeout": False})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=3)


def test_csv_detects_spellings_and_sorts(tmp_path):
    _long_frame().to_csv(tmp_path / "run.csv", index=False)
    ds = load_dataset(tmp_path / "run.csv")
    np.testing.assert_array_equal(ds.episode_lengths, [2, 3])  # sorted by episode id: 3 before 7
    assert ds.metadata["episode_ids"] == [3, 7]
    assert ds.obs_names == ["observation_0", "observation_1"]
    assert ds.discrete and ds.n_actions == 2
    for ep in ds:
        np.testing.assert_array_equal(ep.observations[:, 1], -np.arange(len(ep)))
        np.testing.assert_array_equal(ep.rewards, 1.0 + np.arange(len(ep)))
        assert ep.terminated[-1] and not ep.terminated[:-1].any()


def test_parquet_from_pandas_with_list_column(tmp_path):
    df = pd.DataFrame({"episode": [0, 0, 1], "step": [0, 1, 0], "obs": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
                       "action": [[0.5], [0.25], [-1.0]], "reward": [1.0, 0.0, 2.0], "terminated": [False, True, True]})
    df.to_parquet(tmp_path / "p.parquet")
    ds = load_dataset(tmp_path / "p.parquet")
    np.testing.assert_array_equal(ds.observations, [[1, 2], [3, 4], [5, 6]])
    assert not ds.discrete and ds.act_dim == 1
    np.testing.assert_array_equal(ds.episode_returns, [1, 2])


def test_csv_list_column_and_named_features(tmp_path):
    (tmp_path / "l.csv").write_text('episode,step,observation,action,reward\n0,0,"[1, 2]",1,0.5\n0,1,"[3, 4]",0,0.5\n')
    ds = load_dataset(tmp_path / "l.csv")
    np.testing.assert_array_equal(ds.observations, [[1, 2], [3, 4]])
    (tmp_path / "n.csv").write_text("obs_x,obs_theta,action_force,reward,terminated\n1,2,0.1,1,0\n3,4,0.2,1,1\n5,6,0.3,1,1\n")
    ds = load_dataset(tmp_path / "n.csv")
    assert ds.obs_names == ["x", "theta"] and ds.act_names == ["force"]
    np.testing.assert_array_equal(ds.episode_lengths, [2, 1])  # split on flags without an episode column


@pytest.mark.parametrize("layout", ["records", "lines", "columns"])
def test_json_layouts(layout, tmp_path):
    df = _long_frame()
    path = tmp_path / ("run.jsonl" if layout == "lines" else "run.json")
    if layout == "records":
        df.to_json(path, orient="records")
    elif layout == "lines":
        df.to_json(path, orient="records", lines=True)
    else:
        path.write_text(json.dumps(df.to_dict(orient="list")))
    ds = load_dataset(path)
    np.testing.assert_array_equal(ds.episode_lengths, [2, 3])
    np.testing.assert_array_equal(ds.episode_returns, [3, 6])


def test_npz_from_other_tools(tmp_path):
    # d4rl-like key names, episodes split on flags
    np.savez(tmp_path / "o.npz", obs=np.zeros((5, 2)), actions=np.arange(5) % 2, rewards=np.ones(5),
             terminals=[0, 1, 0, 0, 0], timeouts=[0, 0, 0, 0, 1])
    ds = load_dataset(tmp_path / "o.npz")
    np.testing.assert_array_equal(ds.episode_lengths, [2, 3])
    np.savez(tmp_path / "l.npz", observations=np.zeros((5, 2)), actions=np.zeros(5), rewards=np.ones(5),
             episode_lengths=[1, 4])
    np.testing.assert_array_equal(load_dataset(tmp_path / "l.npz").episode_returns, [1, 4])


def test_parquet_writer_is_plain_long_format(tiny_discrete, tmp_path):
    save_dataset(tiny_discrete, tmp_path / "d.parquet")
    table = pq.read_table(tmp_path / "d.parquet")
    assert table.column_names == ["episode", "step", "obs_x", "obs_v", "action", "reward", "terminated", "truncated"]
    assert table.schema.field("obs_x").type == pa.float32() and table.num_rows == 9


# ---- Minari ---------------------------------------------------------------------------------------

def _collect_minari(tmp_path, monkeypatch, env, data_format, episodes=3, dataset_id="test/cartpole-v0"):
    """Write a dataset with minari's own DataCollector; return it and what was stepped."""
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    col = minari.DataCollector(env, data_format=data_format)
    stepped = []
    for ep in range(episodes):
        obs, _ = col.reset(seed=ep)
        for _ in range(40):
            action = col.action_space.sample()
            stepped.append((obs, action))
            obs, r, term, trunc, _ = col.step(action)
            if term or trunc:
                break
    with pytest.warns(UserWarning):
        col.create_dataset(dataset_id=dataset_id, algorithm_name="random")
    return tmp_path / "minari" / dataset_id, stepped


@pytest.mark.parametrize("data_format", ["hdf5", "arrow"])
def test_minari_data_collector_round_trip(data_format, tmp_path, monkeypatch):
    import gymnasium as gym
    import minari

    env = gym.make("CartPole-v1")
    env.action_space.seed(0)
    root, stepped = _collect_minari(tmp_path, monkeypatch, env, data_format)
    ds = load_dataset(root)
    ref = minari.load_dataset("test/cartpole-v0")
    assert ds.n_episodes == ref.total_episodes and ds.n_transitions == ref.total_steps
    assert ds.env_id == "CartPole-v1" and ds.n_actions == 2 and ds.metadata["format"] == "minari"
    np.testing.assert_array_equal(ds.observations, np.array([o for o, _ in stepped], np.float32))
    np.testing.assert_array_equal(ds.actions, [a for _, a in stepped])
    for i, ep in enumerate(ref.iterate_episodes()):
        mine = ds.episode(i)
        np.testing.assert_array_equal(mine.observations, ep.observations[:-1])
        np.testing.assert_array_equal(mine.rewards, ep.rewards)
        np.testing.assert_array_equal(mine.terminated, ep.terminations)
        np.testing.assert_array_equal(mine.truncated, ep.truncations)
    if data_format == "hdf5":  # the lone main_data.hdf5 reads the same, metadata.json beside it
        assert load_dataset(root / "data" / "main_data.hdf5").equals(ds)
    zpath = tmp_path / "ds.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in root.rglob("*"):
            zf.write(p, p.relative_to(root.parent))
    from_zip = load_dataset(zpath)
    assert_same_arrays(from_zip, ds)
    assert from_zip.env_id == "CartPole-v1"


class _GoalEnv:
    """A tiny goal-conditioned env with Minari's maze layout of dict observations."""

    def __new__(cls):
        import gymnasium as gym
        from gymnasium import spaces

        class GoalEnv(gym.Env):
            def __init__(self):
                box = spaces.Box(-10, 10, (2,), np.float32)
                self.observation_space = spaces.Dict({"observation": spaces.Box(-10, 10, (4,), np.float32),
                                                      "achieved_goal": box, "desired_goal": box})
                self.action_space = spaces.Box(-1, 1, (2,), np.float32)

            def _obs(self):
                return {"observation": np.array([*self.pos, 0, 1], np.float32), "achieved_goal": self.pos.copy(),
                        "desired_goal": np.array([3, 3], np.float32)}

            def reset(self, seed=None, options=None):
                super().reset(seed=seed)
                self.pos, self.t = np.zeros(2, np.float32), 0
                return self._obs(), {}

            def step(self, action):
                self.pos = self.pos + np.asarray(action, np.float32)
                self.t += 1
                return self._obs(), float(-np.linalg.norm(self.pos - 3)), False, self.t >= 5, {}

        return GoalEnv()


def test_minari_dict_observations_flattened_in_key_order(tmp_path, monkeypatch):
    env = _GoalEnv()
    env.action_space.seed(1)
    root, stepped = _collect_minari(tmp_path, monkeypatch, env, "hdf5", episodes=2, dataset_id="test/goal-v0")
    ds = load_dataset(root)
    assert ds.obs_names == ["achieved_goal[0]", "achieved_goal[1]", "desired_goal[0]", "desired_goal[1]",
                            "observation[0]", "observation[1]", "observation[2]", "observation[3]"]
    expected = np.array([np.concatenate([o["achieved_goal"], o["desired_goal"], o["observation"]]) for o, _ in stepped])
    np.testing.assert_array_equal(ds.observations, expected)
    np.testing.assert_array_equal(ds.episode_lengths, [5, 5])
    assert ds.act_dim == 2 and not ds.discrete
