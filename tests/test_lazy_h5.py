"""Chunked / compressed HDF5 image arrays are read lazily (trajectories/lazy_h5.py): opening reads no image, rows read
equal the written ones, pages draw from them, and the hostile-input limits hold before anything is read."""
from pathlib import Path

import h5py
import numpy as np
import pytest

from trajectories import load_dataset
from trajectories.errors import DatasetError
from trajectories.lazy_h5 import LazyRows

PAGES = Path(__file__).resolve().parent.parent / "views"
N, EP = 3_000, 1_000


def _write(path, obs, chunks=(64, 4, 84, 84), **kw):
    n = len(obs)
    with h5py.File(path, "w") as f:
        f.create_dataset("observations", data=obs, chunks=chunks, **kw)
        f["actions"] = np.arange(n) % 4
        f["rewards"] = np.linspace(0, 1, n, dtype=np.float32)
        f["terminals"] = np.zeros(n, bool)
        f["timeouts"] = (np.arange(n) % EP) == EP - 1
        f.attrs["env_id"] = "seqlens/DTAtari-Breakout-v0"
    return path


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, (N, 4, 84, 84), dtype=np.uint8)   # 85 MB, incompressible


@pytest.fixture(scope="module")
def gz(tmp_path_factory, frames):
    return _write(tmp_path_factory.mktemp("lazy") / "breakout-gz.hdf5", frames, compression="gzip", compression_opts=1)


def test_a_gzip_chunked_image_array_opens_without_decoding_any_image(gz, monkeypatch):
    calls = []
    real = h5py.Dataset.__getitem__

    def counting(self, key):
        if self.name == "/observations":
            calls.append(key)
        return real(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", counting)
    ds = load_dataset(gz)
    assert isinstance(ds.observations, LazyRows) and ds.mapped and ds.obs_shape == (4, 84, 84)
    assert ds.n_episodes == 3 and ds.observations.reads == 0 and calls == []
    ds.content_key()   # the cache key hashes the stored (compressed) chunks: still nothing decoded
    assert ds.observations.reads == 0 and calls == []
    ds.observations[2_500]
    assert ds.observations.reads == 1 and len(calls) == 1   # one 64-row block of 47


def test_rows_read_equal_the_written_ones(gz, frames):
    ds = load_dataset(gz)
    obs = ds.observations
    np.testing.assert_array_equal(obs[7], frames[7])
    np.testing.assert_array_equal(obs[-1], frames[-1])
    np.testing.assert_array_equal(obs[60:200:3], frames[60:200:3])
    idx = np.random.default_rng(1).integers(0, N, (9, 30))
    np.testing.assert_array_equal(obs[idx], frames[idx])                       # a batch of windows
    np.testing.assert_array_equal(obs[5, 3, 10:20], frames[5, 3, 10:20])
    np.testing.assert_array_equal(ds.flat_observations[idx[0]], frames.reshape(N, -1)[idx[0]])
    np.testing.assert_array_equal(ds.episode(1).observations, frames[EP:2 * EP])
    with pytest.raises(IndexError):
        obs[N]
    with pytest.raises(ValueError):
        obs.setflags(write=True)


def test_the_decoded_blocks_kept_are_bounded_by_bytes(gz, frames):
    obs = LazyRows(str(gz), "/observations", "x", cache_bytes=3 * 64 * frames[0].nbytes)
    for b in range(10):
        obs[b * 64]
    assert obs.reads == 10 and len(obs._s.cache) == 3 and obs._s.cached <= 3 * 64 * frames[0].nbytes
    obs[9 * 64 + 1]                                   # still kept: no decode
    assert obs.reads == 10


def test_windows_from_a_lazy_array_equal_the_in_memory_ones(gz, frames):
    from models.windows import TrainingData, gather_windows

    lazy = load_dataset(gz)
    mem = load_dataset(gz)
    mem.observations = frames   # the same dataset held in memory
    for ds in (lazy, mem):
        assert ds.shaped
    # episode 1's first and last 70 steps: left-padded windows, and windows across 64-row chunk boundaries
    data = [TrainingData.build(ds, 0.0, 255.0, 1.0, 1000) for ds in (lazy, mem)]
    steps = np.r_[data[0].starts[1]:data[0].starts[1] + 70, data[0].ends[1] - 70:data[0].ends[1]]
    a, b = (gather_windows(d, np.full(len(steps), 1), steps, 10) for d in data)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["obs"].shape == (140, 10, 4, 84, 84) and a["obs"].dtype == np.float32
    np.testing.assert_allclose(a["obs"][-1, -1], frames[2 * EP - 1] / 255.0, rtol=1e-6)   # ends on the last frame


def test_a_chunk_larger_than_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    obs = np.zeros((40, 4, 84, 84), np.uint8)
    path = _write(tmp_path / "big-chunks.hdf5", obs, chunks=(40, 4, 84, 84), compression="gzip")
    monkeypatch.setenv("SEQLENS_MAX_CHUNK_BYTES", str(1 << 20))
    with pytest.raises(DatasetError, match=r"chunks of 1\.08 MiB decoded; the limit is 1 MiB decoded per HDF5 chunk "
                                           r"\(SEQLENS_MAX_CHUNK_BYTES\)"):
        load_dataset(path)


def test_a_declared_shape_past_the_limits_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.hdf5"
    with h5py.File(path, "w") as f:   # declared, never written: 10M frame stacks (282 GB) in one sparse chunk grid
        f.create_dataset("observations", shape=(10_000_000, 4, 84, 84), dtype=np.uint8, chunks=(16, 4, 84, 84),
                         compression="gzip")
        for k, v in (("actions", np.zeros(10, int)), ("rewards", np.zeros(10, np.float32)),
                     ("terminals", np.zeros(10, bool)), ("timeouts", np.zeros(10, bool))):
            f[k] = v
    with pytest.raises(DatasetError, match="SEQLENS_MAX_MAPPED_BYTES"):
        load_dataset(path)


def test_the_dataset_page_draws_frames_from_a_lazy_file(gz, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SEQLENS_LOCAL_DATA", str(gz))
    at = AppTest.from_file(str(PAGES / "1_Dataset.py"), default_timeout=120)
    at.session_state["dataset"] = f"local: {gz.name}"
    at.run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert "3 episodes" in " ".join(m.value for m in at.markdown) or at.get("plotly_chart")
