"""Shaped observations (issue 23 item 1): images, grids and frame stacks in the Dataset, read from npz, D4RL-style
HDF5 and Minari-style HDF5 with their dict parts (direction, mission), memory-mapped where stored uncompressed, and
refused with one sentence past the limits before anything large is allocated."""
import zipfile

import h5py
import numpy as np
import pytest

from trajectories import Dataset, DatasetError, load_dataset, save_dataset
from trajectories.digest import fast_digest

MISSIONS = ["get the blue key", "open the red door"]


def grid_dataset(n=10, starts=(0, 4), source="grid.npz") -> Dataset:
    """n steps of 3x2x3 uint8 grids whose every value is known: obs[t, i, j, c] = (t * 18 + i * 6 + j * 3 + c) % 256."""
    obs = (np.arange(n * 18).reshape(n, 3, 2, 3) % 256).astype(np.uint8)
    trunc = np.zeros(n, bool)
    trunc[[s - 1 for s in starts[1:]] + [n - 1]] = True   # D4RL writes a timeout at each episode end: set them here
    return Dataset(obs, np.arange(n) % 3, np.arange(n, dtype=np.float32), np.zeros(n, bool), trunc, list(starts),
                   source=source, obs_extras={"direction": np.arange(n) % 4, "mission": (np.arange(n) >= 6).astype(int)},
                   missions=MISSIONS)


def test_shape_facts_and_flat_view():
    ds = grid_dataset()
    assert ds.obs_shape == (3, 2, 3) and ds.obs_dim == 18 and ds.shaped and ds.obs_names == []
    assert ds.observations.dtype == np.uint8 and ds.obs_kind == "grids" and ds.obs_shape_text == "3×2×3"
    flat = ds.flat_observations
    assert flat.shape == (10, 18) and np.shares_memory(flat, ds.observations)
    np.testing.assert_array_equal(flat[2], np.arange(36, 54))
    ep = ds.episode(1)
    assert np.shares_memory(ep.observations, ds.observations)
    np.testing.assert_array_equal(ep.extras["direction"], [0, 1, 2, 3, 0, 1])
    np.testing.assert_array_equal(ep.extras["mission"], [0, 0, 1, 1, 1, 1])
    assert ds.summary()["obs_shape"] == [3, 2, 3] and ds.summary()["obs_dim"] == 18


def test_vectors_unchanged():
    ds = Dataset(np.arange(6.0).reshape(3, 2), [0, 1, 0], np.ones(3), np.zeros(3), np.zeros(3), [0])
    assert ds.obs_shape == (2,) and not ds.shaped and ds.obs_names == ["obs_0", "obs_1"]
    assert ds.observations.dtype == np.float32 and ds.flat_observations.shape == (3, 2)
    assert np.shares_memory(ds.flat_observations, ds.observations)


def test_frame_stacks_and_float_images_keep_their_dtype():
    stack = np.zeros((3, 4, 5, 6), np.uint8)
    ds = Dataset(stack, [0, 1, 2], np.ones(3), np.zeros(3), np.zeros(3), [0])
    assert ds.observations is stack and ds.obs_kind == "frame stacks" and ds.obs_shape == (4, 5, 6)
    floats = np.full((3, 8, 8, 1), 0.5, np.float32)
    assert Dataset(floats, [0, 1, 2], np.ones(3), np.zeros(3), np.zeros(3), [0]).observations is floats
    ints = np.full((3, 2, 2), 7, np.int64)   # small whole numbers held in memory become uint8
    assert Dataset(ints, [0, 1, 2], np.ones(3), np.zeros(3), np.zeros(3), [0]).observations.dtype == np.uint8


def test_shaped_nan_refused_with_its_row():
    obs = np.zeros((3, 2, 2), np.float32)
    obs[2, 1, 0] = np.nan
    with pytest.raises(DatasetError, match=r"^run: observations has NaN at row 2\.$"):
        Dataset(obs, [0, 1, 2], np.ones(3), np.zeros(3), np.zeros(3), [0], source="run")


def test_npz_round_trip_maps_the_observations(tmp_path):
    ds = grid_dataset()
    path = tmp_path / "grid.npz"
    save_dataset(ds, path)
    back = load_dataset(path)
    assert back.equals(ds) and back.missions == MISSIONS and back.obs_extras["mission"].dtype == np.int32
    assert isinstance(back.observations, np.memmap) and back.mapped and not back.observations.flags.writeable
    assert back.observations.filename == str(path.resolve())
    assert np.shares_memory(back.episode(1).observations, back.observations)
    assert back.fingerprint() == ds.fingerprint() and back.content_key() == ds.content_key()
    with zipfile.ZipFile(path) as zf:   # observations stored (mappable), the small arrays deflated
        kinds = {i.filename: i.compress_type for i in zf.infolist()}
    assert kinds["observations.npy"] == zipfile.ZIP_STORED and kinds["actions.npy"] == zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path) as zf:
        strings = np.lib.format.read_array(zf.open("observations_mission.npy"))
    assert strings.dtype.kind == "U" and list(strings[[0, 6]]) == MISSIONS


def test_np_savez_maps_and_savez_compressed_decodes(tmp_path):
    obs = (np.arange(4 * 84 * 84) % 251).astype(np.uint8).reshape(4, 84, 84, 1)
    arrays = dict(observations=obs, actions=np.array([0, 1, 2, 3]), rewards=np.ones(4),
                  observations_mission=np.array(["a", "b", "a", "a"]), observations_direction=np.array([3, 2, 1, 0]))
    np.savez(tmp_path / "plain.npz", **arrays)
    np.savez_compressed(tmp_path / "packed.npz", **arrays)
    plain, packed = load_dataset(tmp_path / "plain.npz"), load_dataset(tmp_path / "packed.npz")
    assert isinstance(plain.observations, np.memmap) and not isinstance(packed.observations, np.memmap)
    for ds in (plain, packed):
        np.testing.assert_array_equal(ds.observations, obs)
        assert ds.missions == ["a", "b"]
        np.testing.assert_array_equal(ds.obs_extras["mission"], [0, 1, 0, 0])
        np.testing.assert_array_equal(ds.obs_extras["direction"], [3, 2, 1, 0])
    assert plain.obs_kind == "images" and plain.obs_shape_text == "84×84×1"


def test_d4rl_hdf5_round_trip_maps_contiguous_images(tmp_path):
    ds = grid_dataset(source="grid.hdf5")
    path = tmp_path / "grid.hdf5"
    save_dataset(ds, path)
    back = load_dataset(path)
    assert isinstance(back.observations, np.memmap) and back.observations.filename == str(path.resolve())
    np.testing.assert_array_equal(back.observations, ds.observations)
    assert back.missions == MISSIONS
    for key in ("actions", "rewards", "terminated", "truncated", "episode_starts"):
        np.testing.assert_array_equal(getattr(back, key), getattr(ds, key))
    for key in ("direction", "mission"):
        np.testing.assert_array_equal(back.obs_extras[key], ds.obs_extras[key])
    with h5py.File(path) as f:
        assert f["observations"].chunks is None and f["observations_mission"][6] == b"open the red door"


def test_d4rl_chunked_images_are_decoded(tmp_path):
    obs = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4)
    with h5py.File(tmp_path / "c.hdf5", "w") as f:
        f.create_dataset("observations", data=obs, chunks=(2, 4, 4), compression="gzip")
        f["actions"] = np.zeros(5, int)
        f["rewards"] = np.ones(5)
        f["terminals"] = np.array([0, 0, 1, 0, 1], bool)
    ds = load_dataset(tmp_path / "c.hdf5")
    assert not isinstance(ds.observations, np.memmap)
    np.testing.assert_array_equal(ds.observations, obs)
    np.testing.assert_array_equal(ds.episode_starts, [0, 3])


def _minari(path, ds: Dataset, mission_dtype=None):
    """Minari's layout: episode_i/observations/{image, direction, mission} with T+1 rows (the final one extra)."""
    with h5py.File(path, "w") as f:
        for e, (a, b) in enumerate(zip(ds.episode_starts, ds.episode_ends)):
            g = f.create_group(f"episode_{e}")
            img = np.concatenate([ds.observations[a:b], np.full((1, *ds.obs_shape), 255, np.uint8)])
            g["observations/image"] = img
            g["observations/direction"] = np.append(ds.obs_extras["direction"][a:b], 9)
            texts = [ds.missions[c] for c in ds.obs_extras["mission"][a:b]] + ["final"]
            g.create_dataset("observations/mission", data=texts, dtype=mission_dtype or h5py.string_dtype())
            g["actions"] = ds.actions[a:b]
            g["rewards"] = ds.rewards[a:b]
            g["terminations"] = ds.terminated[a:b]
            g["truncations"] = ds.truncated[a:b]


@pytest.mark.parametrize("mission_dtype", [None, "S20"])
def test_minari_dict_observations(tmp_path, mission_dtype):
    ds = grid_dataset()
    _minari(tmp_path / "main_data.hdf5", ds, mission_dtype)
    back = load_dataset(tmp_path / "main_data.hdf5")
    np.testing.assert_array_equal(back.observations, ds.observations)   # the final observation (all 255) dropped
    assert back.obs_shape == (3, 2, 3) and back.missions == MISSIONS and back.obs_names == []
    np.testing.assert_array_equal(back.obs_extras["direction"], ds.obs_extras["direction"])
    np.testing.assert_array_equal(back.obs_extras["mission"], ds.obs_extras["mission"])
    np.testing.assert_array_equal(back.episode_starts, [0, 4])


def test_minari_image_dict_with_other_keys_is_refused(tmp_path):
    ds = grid_dataset()
    _minari(tmp_path / "main_data.hdf5", ds)
    with h5py.File(tmp_path / "main_data.hdf5", "a") as f:
        f["episode_0/observations/goal"] = np.zeros(5)
    with pytest.raises(DatasetError, match=r"episode_0/observations holds an image with goal beside it"):
        load_dataset(tmp_path / "main_data.hdf5")


def test_digest_reads_the_file_and_equals_the_in_memory_digest(tmp_path):
    ds = grid_dataset()
    save_dataset(ds, tmp_path / "g.npz")
    back = load_dataset(tmp_path / "g.npz")
    assert fast_digest(back.observations) == fast_digest(np.array(ds.observations))
    assert back.obs_digest == back.obs_digest and "_obs_digest" in back.__dict__   # cached: the map is read-only
    other = ds.observations.copy()
    other[9, 2, 1, 2] ^= 1
    assert fast_digest(other) != fast_digest(ds.observations)
    assert ds.obs_digest == fast_digest(ds.observations) and "_obs_digest" not in ds.__dict__   # writeable: not cached
    ds.observations[0, 0, 0, 0] = 99
    assert ds.obs_digest != back.obs_digest


def test_select_keeps_extras_and_missions():
    ds = grid_dataset()
    sub = ds.select([1])
    np.testing.assert_array_equal(sub.observations, ds.observations[4:])
    np.testing.assert_array_equal(sub.obs_extras["mission"], [0, 0, 1, 1, 1, 1])
    assert sub.missions == MISSIONS


def test_vector_consumers_refuse_images_with_one_sentence():
    from models.train import make_config

    ds = Dataset(np.zeros((4, 84, 84, 1), np.uint8), [0, 1, 2, 3], np.ones(4), np.zeros(4), np.zeros(4), [0])
    for kind, who in (("tt", "The Trajectory Transformer's discretizer"), ("mlp", "The MLP baseline"),
                      ("gru", "The GRU baseline")):
        with pytest.raises(DatasetError) as err:
            make_config(kind, ds)
        assert str(err.value) == f"{who} needs vector observations; this dataset's observations are 84×84×1 images."


@pytest.mark.parametrize("ext", [".csv", ".parquet", ".json"])
def test_tables_refuse_shaped_observations(tmp_path, ext):
    with pytest.raises(DatasetError) as err:
        save_dataset(grid_dataset(), tmp_path / f"g{ext}")
    assert str(err.value) == (f"g{ext}: a {ext} table holds vector observations; this dataset's observations are "
                              "3×2×3 grids (write .npz or .hdf5).")
    assert not (tmp_path / f"g{ext}").exists()


def test_minari_zip_with_dict_observations_is_decoded(tmp_path):
    ds = grid_dataset()
    _minari(tmp_path / "main_data.hdf5", ds)
    with zipfile.ZipFile(tmp_path / "grid.zip", "w") as zf:
        zf.write(tmp_path / "main_data.hdf5", "grid/data/main_data.hdf5")
    back = load_dataset(tmp_path / "grid.zip")
    assert not back.mapped   # read from the zip into memory, under the decode budget
    np.testing.assert_array_equal(back.observations, ds.observations)
    np.testing.assert_array_equal(back.obs_extras["mission"], ds.obs_extras["mission"])
    assert back.missions == MISSIONS


def test_observation_lines_refuse_images_in_one_sentence():
    from analysis.publish import catalog

    with pytest.raises(DatasetError) as err:
        catalog.make("episode_observations", None, grid_dataset())
    assert str(err.value) == "A line per observation feature needs vector observations; this dataset's observations are 3×2×3 grids."


def test_a_one_hot_grid_is_a_grid_not_a_frame_stack():
    """DTI's one-hot view (7×7×20 bits, channels last) was read as a 7-frame stack, and its bits scaled by 1/255."""
    ds = Dataset(np.zeros((4, 7, 7, 20), np.uint8), [0, 1, 2, 0], np.ones(4), np.zeros(4), np.zeros(4), [0])
    assert ds.obs_kind == "grids" and ds.obs_shape == (7, 7, 20)
