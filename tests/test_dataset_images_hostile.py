"""Hostile shaped-observation files: declared shapes past the limits, megabyte missions, object missions — each refused
with one sentence before anything large is allocated (tracemalloc bounds what the refusal allocated)."""
import tracemalloc
import zipfile

import h5py
import numpy as np
import pytest

from trajectories import Dataset, DatasetError, load_dataset


def _refused(path, peak_mib: float = 10) -> str:
    tracemalloc.start()
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    msg = str(err.value)
    assert msg.endswith(".") and "\n" not in msg and msg.startswith(path.name), msg
    assert peak < peak_mib * 2**20, peak
    return msg


def _npz(path, **arrays):
    base = dict(observations=np.zeros((4, 7, 7, 3), np.uint8), actions=np.zeros(4, int), rewards=np.ones(4))
    base.update(arrays)
    np.savez(path, **base)
    return path


def test_npz_megabyte_mission_refused_from_its_header(tmp_path):
    wide = np.array(["x" * 2_000_000] * 4)   # '<U2000000': 8 MB a row, 32 MB decoded
    path = _npz(tmp_path / "m.npz", observations_mission=wide)
    msg = _refused(path, 4)
    assert msg == ("m.npz declares observations_mission strings 2,000,000 characters wide; the limit is 1,024 "
                   "characters per mission (SEQLENS_MAX_MISSION_CHARS).")


def test_npz_object_mission_refused_without_unpickling(tmp_path):
    path = _npz(tmp_path / "o.npz", observations_mission=np.array(["a", "b", "c", "d"], dtype=object))
    assert _refused(path) == ("o.npz: array 'observations_mission' holds Python objects, which could only be read "
                              "with pickle; store plain numeric arrays.")


def test_npz_mission_of_numbers_refused(tmp_path):
    path = _npz(tmp_path / "n.npz", observations_mission=np.arange(4))
    assert "observations_mission must be one string per step (fixed-width text), got dtype int64" in _refused(path)


def test_npz_mission_count_and_direction_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLENS_MAX_MISSIONS", "2")
    path = _npz(tmp_path / "c.npz", observations_mission=np.array(["a", "b", "c", "a"]))
    assert _refused(path) == "c.npz declares 3 distinct missions; the limit is 2 missions per dataset (SEQLENS_MAX_MISSIONS)."
    path = _npz(tmp_path / "d.npz", observations_direction=np.zeros(3, int))
    assert "observations_direction must hold one value per step (4), got shape (3,)" in _refused(path)


def test_npz_observation_size_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLENS_MAX_OBS_VALUES", "100")
    path = _npz(tmp_path / "v.npz")
    assert _refused(path) == ("v.npz declares observations of shape 7×7×3 (147 values each); the limit is 100 values "
                              "per observation (SEQLENS_MAX_OBS_VALUES).")


def test_npz_mapped_bytes_limit_and_decode_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLENS_MAX_MAPPED_BYTES", "500")
    path = _npz(tmp_path / "mm.npz")   # np.savez stores: 588 bytes to map
    assert _refused(path) == ("mm.npz declares 4 steps of observations (588 bytes to map); the limit is 500 bytes of "
                              "mapped observations per file (SEQLENS_MAX_MAPPED_BYTES).")
    monkeypatch.delenv("SEQLENS_MAX_MAPPED_BYTES")
    monkeypatch.setenv("SEQLENS_MAX_DECODE_BYTES", "500")
    packed = tmp_path / "packed.npz"
    np.savez_compressed(packed, observations=np.zeros((4, 7, 7, 3), np.uint8), actions=np.zeros(4, int), rewards=np.ones(4))
    assert _refused(packed) == ("packed.npz declares 4 steps of observations (588 bytes decoded); the limit is 500 "
                                "bytes per file (SEQLENS_MAX_DECODE_BYTES); images stored uncompressed (np.savez) are "
                                "memory-mapped instead.")


def test_npz_huge_declared_image_shape_in_a_tiny_file(tmp_path):
    """A stored member whose .npy header declares 10^7 Atari frames (28 GB) over 64 bytes: refused, nothing mapped."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (10_000_000, 4, 84, 84)}
    with zipfile.ZipFile(tmp_path / "big.npz", "w") as zf:
        with zf.open("observations.npy", "w") as out:
            np.lib.format.write_array_header_1_0(out, header)
            out.write(bytes(64))
        for key, arr in (("actions", np.zeros(4, int)), ("rewards", np.ones(4))):
            with zf.open(f"{key}.npy", "w") as out:
                np.lib.format.write_array(out, arr)
    msg = _refused(tmp_path / "big.npz")
    assert "array 'observations' is truncated or corrupt (its header declares 282,240,000,000 bytes" in msg


def test_hdf5_declared_image_shapes_past_the_limits(tmp_path):
    """Unwritten datasets: a 2 KB file declaring 28 GB of frames (decoded: no storage to map) or 50M-value images."""
    for name, shape in (("frames.hdf5", (10**6, 4, 84, 84)), ("wide.hdf5", (4, 4096, 4096, 3))):
        with h5py.File(tmp_path / name, "w") as f:
            f.create_dataset("observations", shape=shape, dtype="u1")
            f["actions"] = np.zeros(shape[0] if shape[0] < 10 else 4, int)
            f["rewards"] = np.ones(4)
            f["terminals"] = np.zeros(4, bool)
        assert (tmp_path / name).stat().st_size < 100_000
    assert _refused(tmp_path / "frames.hdf5") == (
        "frames.hdf5 declares 1,000,000 steps of observations (26.3 GiB decoded); the limit is 1 GiB per file "
        "(SEQLENS_MAX_DECODE_BYTES); images stored contiguous and uncompressed are memory-mapped instead.")
    assert _refused(tmp_path / "wide.hdf5") == ("wide.hdf5 declares observations of shape 4096×4096×3 (50,331,648 "
                                                "values each); the limit is 4,194,304 values per observation "
                                                "(SEQLENS_MAX_OBS_VALUES).")


def test_hdf5_truncated_contiguous_images(tmp_path):
    path = tmp_path / "t.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = np.zeros((100, 84, 84), np.uint8)
        f["actions"] = np.zeros(100, int)
        f["rewards"] = np.ones(100)
        f["terminals"] = np.zeros(100, bool)
        offset = f["observations"].id.get_offset()
    with open(path, "r+b") as fh:
        fh.truncate(offset + 1000)
    msg = _refused(path)
    assert msg.startswith("t.hdf5 is not a readable HDF5 file (truncated"), msg


def _minari_mission(path, make_mission):
    with h5py.File(path, "w") as f:
        g = f.create_group("episode_0")
        g["observations/image"] = np.zeros((4, 7, 7, 3), np.uint8)
        g["observations/direction"] = np.zeros(4, int)
        make_mission(g)
        g["actions"] = np.zeros(3, int)
        g["rewards"] = np.ones(3)
        g["terminations"] = np.zeros(3, bool)
        g["truncations"] = np.zeros(3, bool)
    return path


@pytest.mark.parametrize("make, fragment", [
    (lambda g: g.create_dataset("observations/mission", data=np.array([b"x" * 5_000_000] * 4)),
     "main_data.hdf5 declares episode_0/observations/mission strings 5,000,000 bytes wide; the limit is 1,024 characters"),
    (lambda g: g.create_dataset("observations/mission", data=["go"] * 3 + ["y" * 3_000_000], dtype=h5py.string_dtype()),
     "main_data.hdf5 declares a string of 3,000,000 bytes in episode_0/observations/mission; the limit is 1,024 characters"),
    (lambda g: g.create_dataset("observations/mission", data=np.zeros(4)),
     "main_data.hdf5: episode_0/observations/mission must hold strings, got dtype float64."),
    (lambda g: g.create_dataset("observations/mission", data=["a"] * 3, dtype=h5py.string_dtype()),
     "main_data.hdf5: episode_0/observations/mission must be an array with one row per observation (4)."),
])
def test_minari_hostile_missions(make, fragment, tmp_path):
    path = _minari_mission(tmp_path / "main_data.hdf5", make)
    msg = _refused(path, 40)   # a variable-length string is bounded by the file's own size, read a block at a time
    assert fragment in msg, msg


def test_dataset_level_mission_checks():
    obs = np.zeros((2, 3, 3), np.uint8)
    with pytest.raises(DatasetError, match=r"a mission of 2,000 characters; the limit is 1,024 characters per mission"):
        Dataset(obs, [0, 1], [0, 0], [0, 0], [0, 0], [0], obs_extras={"mission": [0, 0]}, missions=["m" * 2000])
    with pytest.raises(DatasetError, match=r"the mission code at row 1 is out of range for 1 missions"):
        Dataset(obs, [0, 1], [0, 0], [0, 0], [0, 0], [0], obs_extras={"mission": [0, 1]}, missions=["a"])
    with pytest.raises(DatasetError, match=r"obs_extras may hold direction and mission, got colour"):
        Dataset(obs, [0, 1], [0, 0], [0, 0], [0, 0], [0], obs_extras={"colour": [0, 1]})
    with pytest.raises(DatasetError, match=r"observation names are for vector observations; these are 3×3 grids"):
        Dataset(obs, [0, 1], [0, 0], [0, 0], [0, 0], [0], obs_names=["a"] * 9)
