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
    from analysis.identity import dataset_key, stamp_dataset

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
