"""DTI's trajectory pickles (`cli.py convert --from dti-trajectories`): files written exactly as DTI's
TrajectoryWriter.write writes them convert to the right episodes; hostile files are refused with one sentence and
nothing in them runs."""
from __future__ import annotations

import gzip
import json
import lzma
import os
import pickle
import time

import gymnasium as gym
import numpy as np
import pytest

import cli
from models.dti_trajectories import read_dti_trajectories
from trajectories import load_dataset
from trajectories.errors import DatasetError

T, E, H = 5, 2, 3   # steps, envs, grid side
MEMORY = "MiniGrid-MemoryS7FixedStart-v0"


def dti_write(path, observations, actions, rewards, dones, truncated, infos, args, rtg=(), protocol=None):
    """src/utils/trajectory_writer.py's TrajectoryWriter.write, copied (np.float is float: numpy removed the alias)."""
    data = {
        "observations": np.array(observations, dtype=float),
        "actions": np.array(actions, dtype=np.int64),
        "rewards": np.array(rewards, dtype=float),
        "dones": np.array(dones, dtype=bool),
        "truncated": np.array(truncated, dtype=bool),
        "rtgs": np.array(rtg, dtype=float),
        "infos": np.array(infos, dtype=object),
    }
    metadata = {"args": args, "time": time.time()}
    path = str(path)
    opener = lzma.open if path.endswith(".xz") else gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        pickle.dump({"data": data, "metadata": metadata}, f, protocol=protocol)
    return path


def steps():
    """5 steps of 2 envs, accumulated step by step as DTI's PPO memory does ([time][env] lists).
    env 0 ends an episode at t=1 (done) and t=4 (done); env 1 at t=2 (done) and t=4 (truncated: DTI's
    tag_terminated_trajectories sets every env's last step truncated)."""
    obs, acts, rews, dones, truncs, infos = [], [], [], [], [], []
    for t in range(T):
        obs.append([np.full((H, H, 3), 10 * b + t, dtype=np.uint8) + np.arange(3, dtype=np.uint8) for b in range(E)])
        acts.append(np.array([(t + 2 * b) % 7 for b in range(E)]))
        done = np.array([t in (1, 4), t == 2])
        dones.append(done)
        truncs.append(np.array([False, False]))
        rews.append(np.where(done, 0.5 + t, 0.0))
        info = {}
        if done.any():   # what gymnasium's vector env reports at an episode's end (object arrays, numpy scalars)
            info = {"final_observation": np.array([None, obs[-1][1]], dtype=object), "_final_observation": done.copy(),
                    "episode": {"r": np.array([1.5, 0.0], dtype=np.float32), "l": np.array([2, 0], dtype=np.int32)},
                    "scalar": np.float64(3.0)}
        infos.append(info)
    for i in range(E):   # tag_terminated_trajectories
        truncs[-1][i] = True
    return obs, acts, rews, dones, truncs, infos


def dti_args(env_id=MEMORY):
    """run | environment | online config dicts, as TrajectoryWriter.__init__ unions them (spaces included)."""
    action_space = gym.spaces.Discrete(7)
    action_space.seed(1)
    from minigrid.core.mission import MissionSpace
    from minigrid.envs.memory import MemoryEnv

    # EnvironmentConfig keeps the wrapped env's observation space: MiniGrid's dict, its mission function by name
    observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (7, 7, 3), np.uint8),
                                         "direction": gym.spaces.Discrete(4),
                                         "mission": MissionSpace(mission_func=MemoryEnv._gen_mission)})
    observation_space.seed(1)
    return {"exp_name": "memory", "seed": 1, "cuda": True, "env_id": env_id, "one_hot_obs": False, "view_size": 7,
            "max_steps": 30, "action_space": action_space, "observation_space": observation_space,
            "mission_space": gym.spaces.Text(20), "device": "cpu", "num_envs": E, "learning_rate": 0.00025}


def dti_reference(obs, acts, rews, dones, truncs):
    """DTI's TrajectoryDataset.load_trajectories split: rearrange 't b ... -> (b t) ...', split after each step
    that is done or truncated, drop empty pieces."""
    o, a, r = (np.swapaxes(np.array(x, dtype=float), 0, 1).reshape(T * E, *np.shape(x)[2:]) for x in (obs, acts, rews))
    d = np.swapaxes(np.array(dones) | np.array(truncs), 0, 1).reshape(-1)
    cuts = np.flatnonzero(d) + 1
    return [p for p in np.split(o, cuts) if len(p)], [p for p in np.split(a, cuts) if len(p)], \
        [p for p in np.split(r, cuts) if len(p)]


@pytest.mark.parametrize("suffix,protocol", [(".gz", None), (".xz", None), (".pkl", None), (".gz", 5), (".pkl", 2)])
def test_dti_file_converts_to_its_episodes(tmp_path, suffix, protocol):
    raw = steps()
    args = dti_args()
    if protocol == 2:   # protocol 2 writes the mission function's dotted name through getattr, which is refused
        args["observation_space"] = gym.spaces.Box(0, 255, (7, 7, 3), np.uint8)
    path = dti_write(tmp_path / f"traj{suffix}", *raw, args, protocol=protocol)
    ds = read_dti_trajectories(path)

    assert ds.n_episodes == 4 and ds.n_transitions == T * E
    assert ds.episode_starts.tolist() == [0, 2, 5, 8]            # env 0: t0-1, t2-4; env 1: t0-2, t3-4
    assert ds.terminated.tolist() == [0, 1, 0, 0, 1, 0, 0, 1, 0, 0]
    assert ds.truncated.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]   # env 0's last step is done (not both)
    assert ds.observations.dtype == np.uint8 and ds.obs_shape == (H, H, 3)
    assert ds.observations[6, 0, 0].tolist() == [11, 12, 13]     # env 1, t=1
    assert ds.actions.tolist() == [0, 1, 2, 3, 4, 2, 3, 4, 5, 6]
    assert ds.rewards.tolist() == [0, 1.5, 0, 0, 4.5, 0, 0, 2.5, 0, 0]
    assert ds.episode_returns.tolist() == [1.5, 4.5, 2.5, 0.0]
    assert ds.env_id == MEMORY
    assert ds.metadata["format"] == "dti-trajectories" and ds.metadata["dti_args"]["max_steps"] == 30
    assert "action_space" not in ds.metadata["dti_args"]       # a space is absorbed, never read

    ref_obs, ref_acts, ref_rews = dti_reference(*raw[:5])
    assert len(ref_obs) == ds.n_episodes
    for i in range(ds.n_episodes):
        ep = ds.episode(i)
        np.testing.assert_array_equal(ep.observations, ref_obs[i])
        np.testing.assert_array_equal(ep.actions, ref_acts[i])
        np.testing.assert_array_equal(ep.rewards, ref_rews[i])


def test_cli_writes_npz_that_reads_back(tmp_path, capsys):
    path = dti_write(tmp_path / "traj.gz", *steps(), json.dumps({"env_id": MEMORY, "max_steps": 30}))
    out = tmp_path / "out.npz"
    assert cli.main(["convert", "--from", "dti-trajectories", path, "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_episodes"] == 4
    back = load_dataset(out)
    direct = read_dti_trajectories(path)
    assert back.env_id == MEMORY and back.episode_starts.tolist() == [0, 2, 5, 8]
    np.testing.assert_array_equal(back.observations, direct.observations)
    np.testing.assert_array_equal(back.actions, direct.actions)
    np.testing.assert_array_equal(back.rewards, direct.rewards)


def test_env_id_seqlens_does_not_make_is_left_out(tmp_path):
    path = dti_write(tmp_path / "traj.pkl", *steps(), {"env_id": "evil.module:Env"})
    ds = read_dti_trajectories(path)
    assert ds.env_id is None and "names a module" in ds.metadata["env_id_note"]


@pytest.mark.parametrize("env_id,count", [(MEMORY, 7), ("evil.module:Env", 3)])
def test_action_count_from_the_env_where_known(tmp_path, env_id, count):
    obs, acts, *rest = steps()
    acts = [a % 3 for a in acts]   # a short file that never uses MiniGrid's actions 3..6
    ds = read_dti_trajectories(dti_write(tmp_path / "traj.pkl", obs, acts, *rest, {"env_id": env_id}))
    assert ds.n_actions == count


def test_float_observations_stay_float(tmp_path):
    obs, *rest = steps()
    obs = [[o * 0.5 for o in row] for row in obs]   # halves are not grid codes
    ds = read_dti_trajectories(dti_write(tmp_path / "traj.pkl", obs, *rest, {}))
    assert ds.observations.dtype == np.float32 and ds.observations[6, 0, 0].tolist() == [5.5, 6.0, 6.5]


def test_missing_last_tag_still_ends_each_env(tmp_path):
    obs, acts, rews, dones, truncs, infos = steps()
    truncs[-1][:] = False   # a file written without tag_terminated_trajectories
    ds = read_dti_trajectories(dti_write(tmp_path / "traj.pkl", obs, acts, rews, dones, truncs, infos, {}))
    assert ds.episode_starts.tolist() == [0, 2, 5, 8]           # env 1's last episode does not run into nothing
    assert ds.truncated.tolist()[-1] and not ds.truncated.tolist()[4]


# ---- hostile files ----------------------------------------------------------------------------------------
def _refused(path, *words):
    with pytest.raises(DatasetError) as info:
        read_dti_trajectories(path)
    text = str(info.value)
    assert text.startswith(os.path.basename(str(path))) and text.endswith(".") and "\n" not in text
    for w in words:
        assert w in text, text
    return text


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("suffix,protocol", [(".pkl", 2), (".pkl", 4), (".gz", 4), (".xz", 5)])
def test_pickle_calling_os_system_is_refused_unrun(tmp_path, suffix, protocol):
    marker = tmp_path / "ran"
    path = dti_write(tmp_path / f"evil{suffix}", *steps(), {"env_id": MEMORY, "x": _System(marker)}, protocol=protocol)
    assert _refused(path, "holds the global posix.system", "refused without running it")
    assert not marker.exists()
    # the same object under data (where arrays are read) is refused just the same
    data = {"observations": _System(marker)}
    with open(tmp_path / "evil2.pkl", "wb") as f:
        pickle.dump({"data": data, "metadata": {}}, f, protocol=protocol)
    _refused(tmp_path / "evil2.pkl", "posix.system")
    assert not marker.exists()


def test_global_outside_allow_list_is_refused(tmp_path):
    import decimal

    path = dti_write(tmp_path / "odd.pkl", *steps(), {"lr": decimal.Decimal("0.1")})
    _refused(path, "holds the global decimal.Decimal")


class _HugeArray:
    """An ndarray's pickle declaring 10^12 float64 values while holding 16 bytes."""

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return _reconstruct, (np.ndarray, (0,), b"b"), (1, (1_000_000, 1_000_000), np.dtype("f8"), False, b"\0" * 16)


def test_array_declaring_a_trillion_values_is_refused(tmp_path):
    obs, acts, rews, dones, truncs, infos = steps()
    data = {"observations": _HugeArray(), "actions": np.array(acts), "rewards": np.array(rews, dtype=float),
            "dones": np.array(dones), "truncated": np.array(truncs)}
    with open(tmp_path / "huge.pkl", "wb") as f:
        pickle.dump({"data": data, "metadata": {}}, f)
    _refused(tmp_path / "huge.pkl", "(1000000, 1000000)", "16 bytes of data")


def test_steps_over_the_limit_are_refused(tmp_path, monkeypatch):
    path = dti_write(tmp_path / "traj.gz", *steps(), {})
    monkeypatch.setenv("SEQLENS_MAX_TRANSITIONS", "9")
    _refused(path, "5 x 2 = 10 steps", "SEQLENS_MAX_TRANSITIONS")


@pytest.mark.parametrize("opener,suffix", [(gzip.open, ".gz"), (lzma.open, ".xz")])
def test_decompression_bomb_stops_at_the_limit(tmp_path, monkeypatch, opener, suffix):
    path = tmp_path / f"bomb{suffix}"
    with opener(path, "wb") as f:
        f.write(b"\x80\x04")
        for _ in range(64):
            f.write(bytes(1 << 20))   # 64 MiB of zeros: a few KB on disk
    assert path.stat().st_size < 1 << 20
    monkeypatch.setenv("SEQLENS_MAX_DECODE_BYTES", str(8 << 20))
    _refused(path, "decompresses to more than 8 MiB", "SEQLENS_MAX_DECODE_BYTES")


@pytest.mark.parametrize("suffix,words", [(".gz", "truncated gzip stream"), (".xz", "truncated xz stream"),
                                          (".pkl", "truncated pickle")])
def test_truncated_file_is_refused(tmp_path, suffix, words):
    path = dti_write(tmp_path / f"traj{suffix}", *steps(), dti_args())
    blob = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(blob[: len(blob) // 2])
    _refused(path, words)


def test_not_a_pickle_is_refused(tmp_path):
    path = tmp_path / "notes.pkl"
    path.write_text("hello")
    _refused(path, "is not a DTI trajectory file")


def test_cli_refusal_is_one_line(tmp_path, capsys):
    marker = tmp_path / "ran"
    path = dti_write(tmp_path / "evil.gz", *steps(), {"x": _System(marker)})
    out = tmp_path / "out.npz"
    assert cli.main(["convert", "--from", "dti-trajectories", path, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: evil.gz holds the global posix.system") and "\n" not in err
    assert not out.exists() and not marker.exists()


def test_convert_without_from_never_unpickles(tmp_path, capsys):
    marker = tmp_path / "ran"
    path = dti_write(tmp_path / "traj.pkl", *steps(), {"x": _System(marker)})
    assert cli.main(["convert", path, str(tmp_path / "out.npz")]) == 2
    assert "pass --from dti-trajectories" in capsys.readouterr().err and not marker.exists()


def test_deeply_nested_tuples_are_refused_before_building(tmp_path):
    """1,000,000 nested TUPLE1 as a dict key (1 MB) crashes CPython's tuple hash (segfault) if ever built."""
    path = tmp_path / "deep.pkl"
    path.write_bytes(b"\x80\x04}" + b"N" + b"\x85" * 1_000_000 + b"N" + b"s.")
    _refused(path, "nests tuples more than 64 deep")
    memo = tmp_path / "memo.pkl"   # the same depth reached through the memo (BINPUT / BINGET)
    memo.write_bytes(b"\x80\x04}" + b"N" + b"\x85q\x00h\x00\x85" * 40 + b"N" + b"s.")
    _refused(memo, "nests tuples more than 64 deep")


def test_checkpoint_pickles_count_tuple_depth_too():
    """convert-agent's data.pkl scan (models/pickle_scan.py) shares the count: 150,000 nested tuples as a dict key
    (within its 200,000 opcodes) segfaulted the process before."""
    from models.pickle_scan import Refused, unpickle

    with pytest.raises(Refused, match="nests tuples more than 64 deep"):
        unpickle(b"\x80\x02}" + b"N" + b"\x85" * 150_000 + b"N" + b"s.", {}, False)
