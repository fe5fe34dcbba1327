"""Dopamine's DQN-replay buffers (`cli.py convert --from dqn-replay`): buffers written exactly as Dopamine's
OutOfGraphReplayBuffer writes them convert to their whole episodes, with kzl's stacks; hostile files are refused
with one sentence before anything large is decompressed."""
from __future__ import annotations

import gzip
import json
import os
import pickle

import numpy as np
import pytest

import cli
from trajectories import load_dataset
from trajectories.dqn_replay import convert_dqn_replay
from trajectories.errors import DatasetError

STORE_FILENAME_PREFIX = "$store$_"
# Dopamine's save opens GzipFile(fileobj=f) without a mode, as copied below; Python 3.12 warns about that
pytestmark = pytest.mark.filterwarnings("ignore:GzipFile was opened for writing")


class DopamineBuffer:
    """dopamine/replay_memory/circular_replay_buffer.py's OutOfGraphReplayBuffer: add (with its zero padding before
    each episode), the circular cursor, invalid_range, get_observation_stack and save, copied without TensorFlow
    (tf.gfile.Open -> open; the stale-checkpoint removal left out)."""

    def __init__(self, capacity, stack_size=4, update_horizon=1, observation_shape=(84, 84)):
        self._replay_capacity, self._stack_size, self._update_horizon = capacity, stack_size, update_horizon
        self._store = {"observation": np.empty((capacity, *observation_shape), np.uint8),
                       "action": np.empty((capacity,), np.int32), "reward": np.empty((capacity,), np.float32),
                       "terminal": np.empty((capacity,), np.uint8)}
        self.add_count = np.array(0)
        self.invalid_range = np.zeros((self._stack_size))

    def cursor(self):
        return self.add_count % self._replay_capacity

    def add(self, observation, action, reward, terminal):
        if self.add_count == 0 or self._store["terminal"][self.cursor() - 1] == 1:
            for _ in range(self._stack_size - 1):
                self._add(np.zeros_like(observation), 0, 0.0, 0)
        self._add(observation, action, reward, terminal)

    def _add(self, *args):
        cursor = self.cursor()
        for name, arg in zip(("observation", "action", "reward", "terminal"), args):
            self._store[name][cursor] = arg
        self.add_count += 1
        self.invalid_range = np.array([(self.cursor() - self._update_horizon + i) % self._replay_capacity
                                       for i in range(self._stack_size + self._update_horizon)])

    def get_observation_stack(self, index):
        indices = [(index - self._stack_size + 1 + i) % self._replay_capacity for i in range(self._stack_size)]
        return np.moveaxis(self._store["observation"][indices, ...], 0, -1)

    def _return_checkpointable_elements(self):
        out = {}
        for member_name, member in self.__dict__.items():
            if member_name == "_store":
                for array_name, array in self._store.items():
                    out[STORE_FILENAME_PREFIX + array_name] = array
            elif not member_name.startswith("_"):
                out[member_name] = member
        return out

    def save(self, checkpoint_dir, iteration_number):
        for attr in self._return_checkpointable_elements():
            filename = os.path.join(checkpoint_dir, "{}_ckpt.{}.gz".format(attr, iteration_number))
            with open(filename, "wb") as f:
                with gzip.GzipFile(fileobj=f) as outfile:
                    if attr.startswith(STORE_FILENAME_PREFIX):
                        np.save(outfile, self._store[attr[len(STORE_FILENAME_PREFIX):]], allow_pickle=False)
                    elif isinstance(self.__dict__[attr], np.ndarray):
                        np.save(outfile, self.__dict__[attr], allow_pickle=False)
                    else:
                        pickle.dump(self.__dict__[attr], outfile)


def frame(value):
    """A frame that says which step it is (value 1..255), with a mark that keeps frames distinct past 255."""
    f = np.full((84, 84), value % 251 + 1, np.uint8)
    f[0, 0] = value // 251
    return f


def play(buffer, lengths, first=0):
    """Episodes of the given lengths; returns each episode's (frames, actions, rewards) as added."""
    episodes, v = [], first
    for n in lengths:
        frames, actions, rewards = [], [], []
        for t in range(n):
            frames.append(frame(v)); actions.append(v % 4); rewards.append(float(v % 3))
            buffer.add(frames[-1], actions[-1], rewards[-1], int(t == n - 1))
            v += 1
        episodes.append((frames, actions, rewards))
    return episodes


def stacks_of(frames):
    """The env's zero-padded stacks (envs/atari.py) of one episode's frames."""
    padded = [np.zeros((84, 84), np.uint8)] * 3 + list(frames)
    return np.stack([np.stack(padded[t:t + 4]) for t in range(len(frames))])


def test_a_buffer_converts_to_its_episodes_with_kzls_stacks(tmp_path, capsys):
    buf = DopamineBuffer(capacity=100)
    episodes = play(buf, [5, 1, 7])
    buf.add(frame(200), 1, 1.0, 0)   # an episode still running when the buffer was saved: left out
    buf.save(str(tmp_path), 3)
    assert len(os.listdir(tmp_path)) == 6
    out = tmp_path / "out.npz"
    assert cli.main(["convert", "--from", "dqn-replay", str(tmp_path), "--game", "Breakout", "--buffers", "1",
                     "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_episodes"] == 3 and summary["n_transitions"] == 13 and summary["buffers"] == [3]
    ds = load_dataset(out)
    assert ds.env_id == "seqlens/DTAtari-Breakout-v0" and ds.n_actions == 4 and ds.obs_shape == (4, 84, 84)
    assert ds.mapped and ds.observations.dtype == np.uint8
    assert ds.episode_starts.tolist() == [0, 5, 6]
    assert ds.terminated.tolist() == [False] * 4 + [True, True] + [False] * 6 + [True]
    for i, (frames, actions, rewards) in enumerate(episodes):
        ep = ds.episode(i)
        np.testing.assert_array_equal(ep.observations, stacks_of(frames))
        np.testing.assert_array_equal(ep.actions, actions)
        np.testing.assert_array_equal(ep.rewards, rewards)
    # kzl's states are Dopamine's stacks of the same slots (channel axis moved first): slot 3 is the first real step
    np.testing.assert_array_equal(ds.observations[0], buf.get_observation_stack(3).transpose(2, 0, 1))
    np.testing.assert_array_equal(ds.observations[12], buf.get_observation_stack(3 + 5 + 3 + 1 + 3 + 6)
                                  .transpose(2, 0, 1))
    # returns-to-go from the episode's own rewards (kzl adds the next episode's first reward)
    np.testing.assert_allclose(ds.episode(0).returns_to_go, np.cumsum(episodes[0][2][::-1])[::-1])


def test_a_full_buffer_is_read_oldest_first_without_its_cut_episode(tmp_path):
    buf = DopamineBuffer(capacity=40)
    episodes = play(buf, [9, 6, 8, 5, 7, 6])   # 41 + 6 x 3 padding = 59 slots: the first 19 are overwritten
    buf.save(str(tmp_path), 0)
    assert int(buf.add_count) == 59
    ds_out = tmp_path / "out.npz"
    convert_dqn_replay(tmp_path, ds_out, env_id="seqlens/DTAtari-Breakout-v0", n_actions=4)
    ds = load_dataset(ds_out)
    # slots 19..58 survive: the third episode (slot 24, after its padding 21..23) is the oldest whole one
    kept = episodes[2:]
    assert ds.n_episodes == len(kept)
    for i, (frames, actions, rewards) in enumerate(kept):
        np.testing.assert_array_equal(ds.episode(i).observations, stacks_of(frames))
        np.testing.assert_array_equal(ds.episode(i).actions, actions)
    # --trajectories-per-buffer keeps the oldest whole episodes
    convert_dqn_replay(tmp_path, tmp_path / "two.npz", trajectories_per_buffer=2)
    two = load_dataset(tmp_path / "two.npz")
    assert two.n_episodes == 2 and two.n_transitions == 8 + 5


def test_buffers_are_the_highest_suffixes_in_order(tmp_path):
    for suffix, lengths, first in ((1, [3], 0), (2, [4], 10), (3, [2, 2], 20)):
        buf = DopamineBuffer(capacity=30)
        play(buf, lengths, first)
        buf.save(str(tmp_path), suffix)
    summary = convert_dqn_replay(tmp_path, tmp_path / "out.npz", buffers=2)
    ds = load_dataset(tmp_path / "out.npz")
    assert summary["buffers"] == [2, 3] and ds.episode_lengths.tolist() == [4, 2, 2]
    np.testing.assert_array_equal(ds.observations[0, -1], frame(10))
    with pytest.raises(DatasetError, match=r"holds 3 buffer\(s\) \(1, 2, 3\); 4 were asked for"):
        convert_dqn_replay(tmp_path, tmp_path / "x.npz", buffers=4)


def small_buffer(tmp_path, suffix=0):
    buf = DopamineBuffer(capacity=20)
    play(buf, [4])
    buf.save(str(tmp_path), suffix)
    return tmp_path / f"$store$_observation_ckpt.{suffix}.gz"


def gz_npy(path, header: dict, data: bytes = b"", tail_zeros: int = 0):
    """A gzipped .npy with a hand-written header (what a hostile file declares) and any data after it."""
    with gzip.open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(data)
        block = b"\0" * (1 << 20)
        for _ in range(tail_zeros >> 20):
            f.write(block)


def refused(tmp_path, capsys) -> str:
    code = cli.main(["convert", "--from", "dqn-replay", str(tmp_path), "--game", "breakout", "--out",
                     str(tmp_path / "out.npz")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out.npz").exists()
    return err


def test_a_pickled_object_array_is_refused_unread(tmp_path, capsys, monkeypatch):
    small_buffer(tmp_path)
    with gzip.open(tmp_path / "$store$_action_ckpt.0.gz", "wb") as f:
        np.save(f, np.array([object()] * 20, dtype=object), allow_pickle=True)
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    assert "holds Python objects" in refused(tmp_path, capsys)


def test_a_header_declaring_a_trillion_values_is_refused_before_reading(tmp_path, capsys):
    small_buffer(tmp_path)
    gz_npy(tmp_path / "$store$_observation_ckpt.0.gz", {"descr": "|u1", "fortran_order": False,
                                                        "shape": (10 ** 12 // 7056, 84, 84)})
    err = refused(tmp_path, capsys)
    assert "capacities" in err or "SEQLENS_MAX_TRANSITIONS" in err
    gz_npy(tmp_path / "$store$_observation_ckpt.0.gz", {"descr": "|u1", "fortran_order": False, "shape": (10 ** 12,)})
    assert "Dopamine writes uint8 of shape (capacity×84×84)" in refused(tmp_path, capsys)
    for name in ("action", "reward", "terminal"):   # every store array of a trillion rows: the step limit
        dtype = {"action": "<i4", "reward": "<f4", "terminal": "|u1"}[name]
        gz_npy(tmp_path / f"$store$_{name}_ckpt.0.gz", {"descr": dtype, "fortran_order": False, "shape": (10 ** 12,)})
    gz_npy(tmp_path / "$store$_observation_ckpt.0.gz", {"descr": "|u1", "fortran_order": False,
                                                        "shape": (10 ** 12, 84, 84)})
    assert "SEQLENS_MAX_TRANSITIONS" in refused(tmp_path, capsys)


def test_a_gzip_bomb_is_read_only_as_far_as_its_header_declares(tmp_path):
    small_buffer(tmp_path)
    terminal = np.zeros(20, np.uint8)
    terminal[3 + 3] = 1   # the 4-step episode after 3 padding slots
    # the declared 20 bytes, then 256 MiB of zeros (~250 KB compressed) that must never be decompressed
    gz_npy(tmp_path / "$store$_terminal_ckpt.0.gz", {"descr": "|u1", "fortran_order": False, "shape": (20,)},
           terminal.tobytes(), tail_zeros=256 << 20)
    assert (tmp_path / "$store$_terminal_ckpt.0.gz").stat().st_size < 1 << 20
    reads = []
    real_read = gzip.GzipFile.read
    gzip.GzipFile.read = lambda self, n=-1: reads.append(n) or real_read(self, n)
    try:
        convert_dqn_replay(tmp_path, tmp_path / "out.npz")
    finally:
        gzip.GzipFile.read = real_read
    assert all(0 <= n <= 20 * 84 * 84 for n in reads)   # never an unbounded read
    assert load_dataset(tmp_path / "out.npz").n_transitions == 4


def test_a_missing_file_is_named(tmp_path, capsys):
    small_buffer(tmp_path)
    (tmp_path / "$store$_reward_ckpt.0.gz").unlink()
    assert "$store$_reward_ckpt.0.gz is missing" in refused(tmp_path, capsys)


def test_a_truncated_stream_and_bad_requests_are_one_sentence(tmp_path, capsys):
    obs = small_buffer(tmp_path)
    data = gzip.decompress(obs.read_bytes())
    obs.write_bytes(gzip.compress(data[:len(data) // 10]))   # the header and two of the seven frames needed
    assert "truncated" in refused(tmp_path, capsys)
    assert cli.main(["convert", "--from", "dqn-replay", str(tmp_path), "--game", "Tetris", "--out",
                     str(tmp_path / "o.npz")]) == 2
    assert "one of the DT paper's games" in capsys.readouterr().err
    assert cli.main(["convert", "--from", "dqn-replay", str(tmp_path / "nowhere"), "--game", "Pong", "--out",
                     str(tmp_path / "o.npz")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    for option, value in (("--buffers", "0"), ("--trajectories-per-buffer", "0")):
        assert cli.main(["convert", "--from", "dqn-replay", str(tmp_path), "--game", "Pong", option, value, "--out",
                         str(tmp_path / "o.npz")]) == 2
        assert "must be at least 1, got 0" in capsys.readouterr().err
    assert cli.main(["convert", str(tmp_path / "x.npz"), "--buffers", "2", "--out", str(tmp_path / "o.npz")]) == 2
    assert "go with --from dqn-replay only" in capsys.readouterr().err
