"""Property-based fuzzing of the readers: any bytes give a Dataset or a DatasetError, nothing else;
any valid Dataset round-trips exactly."""
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trajectories import Dataset, DatasetError, load_dataset, save_dataset

EXTS = [".npz", ".parquet", ".csv", ".json", ".hdf5", ".zip"]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read_bytes(data: bytes, ext: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{ext}"
        path.write_bytes(data)
        try:
            return load_dataset(path)
        except DatasetError as e:
            msg = str(e)
            assert msg.startswith(f"fuzz{ext}") or f"of fuzz{ext}" in msg, msg
            assert "\n" not in msg
            return None


@FUZZ
@given(data=st.binary(min_size=0, max_size=2048), ext=st.sampled_from(EXTS))
def test_random_bytes(data, ext):
    _read_bytes(data, ext)


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("0123456789,.-\n\"[]eEnaift ")), max_size=400),
       header=st.sampled_from(["episode,step,obs_0,action,reward,done\n", "obs,action,reward\n", "t,obs_0,obs_1,action_0,r\n"]))
def test_random_csv_bodies(text, header):
    _read_bytes((header + text).encode(), ".csv")


@st.composite
def datasets(draw):
    lengths = draw(st.lists(st.integers(1, 6), min_size=1, max_size=5))
    n = sum(lengths)
    obs_dim = draw(st.integers(1, 4))
    finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)
    obs = draw(arrays(np.float32, (n, obs_dim), elements=finite))
    if draw(st.booleans()):
        actions = draw(arrays(np.int64, n, elements=st.integers(0, 5)))
    else:
        actions = draw(arrays(np.float32, (n, draw(st.integers(1, 3))), elements=finite))
    rewards = draw(arrays(np.float32, n, elements=finite))
    term = draw(arrays(np.bool_, n))
    trunc = draw(arrays(np.bool_, n))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    infos = {}
    if draw(st.booleans()):   # MuJoCo states: any finite float64 (text formats must keep them exactly too)
        any64 = st.floats(allow_nan=False, allow_infinity=False, width=64)
        infos = {k: draw(arrays(np.float64, (n, draw(st.integers(1, 4))), elements=any64)) for k in ("qpos", "qvel")}
    return Dataset(obs, actions, rewards, term, trunc, starts, env_id="Fuzz-v0", infos=infos)


@FUZZ
@given(ds=datasets(), ext=st.sampled_from([".npz", ".parquet"]))
def test_binary_round_trip_exact(ds, ext):
    with tempfile.TemporaryDirectory() as tmp:
        save_dataset(ds, Path(tmp) / f"d{ext}")
        assert load_dataset(Path(tmp) / f"d{ext}").equals(ds)


@FUZZ
@given(ds=datasets(), ext=st.sampled_from([".csv", ".json"]))
def test_text_round_trip_values(ds, ext):
    with tempfile.TemporaryDirectory() as tmp:
        save_dataset(ds, Path(tmp) / f"d{ext}")
        back = load_dataset(Path(tmp) / f"d{ext}")
        for key in ("observations", "rewards", "terminated", "truncated", "episode_starts"):
            np.testing.assert_array_equal(getattr(back, key), getattr(ds, key))
        np.testing.assert_array_equal(back.actions, ds.actions)
        assert back.infos.keys() == ds.infos.keys()
        for k, v in ds.infos.items():
            assert back.infos[k].dtype == v.dtype
            np.testing.assert_array_equal(back.infos[k], v)


@FUZZ
@given(ds=datasets(), ext=st.sampled_from([".npz", ".parquet", ".hdf5"]), cut=st.floats(0.05, 0.95),
       flips=st.lists(st.integers(0, 10**6), max_size=8))
def test_damaged_files(ds, ext, cut, flips):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"d{ext}"
        save_dataset(ds, path)
        data = bytearray(path.read_bytes())
        for f in flips:
            data[f % len(data)] ^= 0xFF
        _read_bytes(bytes(data[: max(1, int(len(data) * cut))]) if cut < 0.9 else bytes(data), ext)


@st.composite
def shaped_datasets(draw):
    """Images / grids / frame stacks (uint8 or float32), with MiniGrid's direction and missions half the time."""
    lengths = draw(st.lists(st.integers(1, 5), min_size=1, max_size=4))
    n = sum(lengths)
    shape = draw(st.sampled_from([(3, 2), (2, 3, 1), (3, 3, 3), (2, 2, 4), (4, 2, 3)]))
    if draw(st.booleans()):
        obs = draw(arrays(np.uint8, (n, *shape)))
    else:
        obs = draw(arrays(np.float32, (n, *shape), elements=st.floats(-1e6, 1e6, allow_nan=False, width=32)))
    extras, missions = {}, None
    if draw(st.booleans()):
        missions = sorted(set(draw(st.lists(st.text(min_size=0, max_size=12).filter(lambda t: "\0" not in t),
                                            min_size=1, max_size=3))))
        extras = {"direction": draw(arrays(np.int64, n, elements=st.integers(0, 3))),
                  "mission": draw(arrays(np.int64, n, elements=st.integers(0, len(missions) - 1)))}
    trunc = np.zeros(n, bool)
    trunc[np.cumsum(lengths) - 1] = True   # D4RL's split needs a flag at each episode end
    return Dataset(obs, draw(arrays(np.int64, n, elements=st.integers(0, 5))), np.ones(n), np.zeros(n, bool), trunc,
                   np.concatenate([[0], np.cumsum(lengths)[:-1]]), obs_extras=extras, missions=missions)


def _used(ds: Dataset) -> Dataset:
    """The missions a reader can know: those some step uses (the files store one string per step)."""
    if ds.missions is None:
        return ds
    used = np.unique(ds.obs_extras["mission"])
    remap = np.full(len(ds.missions), -1)
    remap[used] = np.arange(len(used))
    return Dataset(ds.observations, ds.actions, ds.rewards, ds.terminated, ds.truncated, ds.episode_starts,
                   obs_extras={"direction": ds.obs_extras["direction"], "mission": remap[ds.obs_extras["mission"]]},
                   missions=[ds.missions[i] for i in used])


@FUZZ
@given(ds=shaped_datasets(), ext=st.sampled_from([".npz", ".hdf5"]))
def test_shaped_round_trip_exact(ds, ext):
    with tempfile.TemporaryDirectory() as tmp:
        save_dataset(ds, Path(tmp) / f"d{ext}")
        back = load_dataset(Path(tmp) / f"d{ext}")
        assert isinstance(back.observations, np.memmap)
        want = _used(ds)
        np.testing.assert_array_equal(back.observations, want.observations)
        assert back.observations.dtype == want.observations.dtype and back.missions == want.missions
        for k, v in want.obs_extras.items():
            np.testing.assert_array_equal(back.obs_extras[k], v)
        np.testing.assert_array_equal(back.episode_starts, want.episode_starts)


@FUZZ
@given(ds=shaped_datasets(), ext=st.sampled_from([".npz", ".hdf5"]), cut=st.floats(0.05, 0.95),
       flips=st.lists(st.integers(0, 10**6), max_size=8))
def test_damaged_shaped_files(ds, ext, cut, flips):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"d{ext}"
        save_dataset(ds, path)
        data = bytearray(path.read_bytes())
        for f in flips:
            data[f % len(data)] ^= 0xFF
        _read_bytes(bytes(data[: max(1, int(len(data) * cut))]) if cut < 0.9 else bytes(data), ext)
