"""Model windows over shaped observations: the raw array is kept (a memory map stays one), only gathered windows
become float32 — through the agent's obs_transform, else its mean/std over the observation's shape — and vector
datasets gather exactly what they did before."""
import numpy as np

from models.windows import TrainingData, episode_windows, gather_windows, sample_windows
from trajectories import Dataset, load_dataset, save_dataset


def _images():
    """6 steps of 2x2 uint8 images, obs[t] = [[t, t+10], [t+20, t+30]]; episodes [0, 1, 2], [3, 4, 5]."""
    t = np.arange(6, dtype=np.uint8)[:, None, None]
    obs = t + np.array([[0, 10], [20, 30]], np.uint8)[None]
    return Dataset(obs, [0, 1, 2, 0, 1, 2], np.arange(6, dtype=np.float32), np.zeros(6), np.zeros(6), [0, 3])


def test_raw_array_kept_and_windows_standardised_by_hand():
    ds = _images()
    data = TrainingData.build(ds, state_mean=2.0, state_std=4.0, rtg_scale=1.0, max_ep_len=100)
    assert data.obs is ds.observations   # no up-front float copy
    w = gather_windows(data, np.array([1, 0]), np.array([4, 1]), 3)
    assert w["obs"].shape == (2, 3, 2, 2) and w["obs"].dtype == np.float32
    # episode 1 ending at step 4: [pad, step 3, step 4]; episode 0 ending at step 1: [pad, step 0, step 1]
    expect = np.zeros((2, 3, 2, 2), np.float32)
    for b, steps in enumerate(([3, 4], [0, 1])):
        for k, s in enumerate(steps, start=1):
            expect[b, k] = (np.array([[s, s + 10], [s + 20, s + 30]], np.float32) - 2.0) / 4.0
    np.testing.assert_array_equal(w["obs"], expect)
    np.testing.assert_array_equal(w["mask"], [[False, True, True], [False, True, True]])
    np.testing.assert_array_equal(w["actions"], [[0, 0, 1], [0, 0, 1]])


def test_per_value_statistics_and_the_agents_transform():
    ds = _images()
    mean = np.array([0, 10, 20, 30], np.float32)   # one per value, in the observation's C order
    data = TrainingData.build(ds, mean, np.ones(4), 1.0, 100)
    w = episode_windows(data, 1, 2)
    np.testing.assert_array_equal(w["obs"][1], [np.full((2, 2), 3.0), np.full((2, 2), 4.0)])
    scaled = TrainingData.build(ds, 0.0, 1.0, 1.0, 100, obs_transform=lambda x: x.astype(np.float32) / 255)
    w = gather_windows(scaled, np.array([0]), np.array([2]), 2)
    np.testing.assert_allclose(w["obs"][0], np.array([[[1, 11], [21, 31]], [[2, 12], [22, 32]]], np.float32) / 255)


def test_windows_read_only_the_gathered_frames_of_a_mapped_file(tmp_path):
    ds = _images()
    save_dataset(ds, tmp_path / "img.npz")
    mapped = load_dataset(tmp_path / "img.npz")
    assert isinstance(mapped.observations, np.memmap)
    data = TrainingData.build(mapped, 0.0, 1.0, 1.0, 100)
    assert data.obs is mapped.observations
    a = gather_windows(data, np.array([1]), np.array([5]), 3)
    b = gather_windows(TrainingData.build(ds, 0.0, 1.0, 1.0, 100), np.array([1]), np.array([5]), 3)
    assert type(a["obs"]) is np.ndarray
    np.testing.assert_array_equal(a["obs"], b["obs"])
    np.testing.assert_array_equal(a["obs"][0, 0], [[3, 13], [23, 33]])


def _old_gather(ds, mean, std, episodes, last_steps, K, rtg_scale, max_ep_len):
    """models/windows.py as it was before shaped observations (reference for bit-identity on vectors)."""
    obs = (ds.observations - np.asarray(mean, np.float32)) / np.maximum(np.asarray(std, np.float32), 1e-6)
    rtg = (ds.returns_to_go / rtg_scale).astype(np.float32)
    ts = np.minimum(ds.timesteps, max_ep_len - 1)
    starts = ds.episode_starts[episodes]
    idx = last_steps[:, None] - np.arange(K - 1, -1, -1)[None, :]
    mask = idx >= starts[:, None]
    idx = np.where(mask, idx, starts[:, None])
    out = {"obs": obs[idx], "actions": ds.actions[idx], "rewards": ds.rewards[idx], "rtg": rtg[idx], "timesteps": ts[idx]}
    for key, arr in out.items():
        out[key] = np.where(mask.reshape(mask.shape + (1,) * (arr.ndim - 2)), arr, 0).astype(arr.dtype)
    return {**out, "mask": mask}


def test_vector_windows_bit_identical_to_before():
    rng = np.random.default_rng(3)
    ds = Dataset(rng.normal(size=(50, 3)), rng.normal(size=(50, 2)), rng.normal(size=50), np.zeros(50), np.zeros(50),
                 [0, 7, 30])
    mean, std = rng.normal(size=3), rng.uniform(0.5, 2, size=3)
    data = TrainingData.build(ds, mean, std, 3.0, 30)
    assert data.obs_transform is None and data.obs.dtype == np.float32
    w = sample_windows(data, 16, 5, np.random.default_rng(0))
    rng2 = np.random.default_rng(0)
    episodes = rng2.integers(0, 3, size=16)
    lengths = ds.episode_ends[episodes] - ds.episode_starts[episodes]
    last = ds.episode_starts[episodes] + (rng2.random(16) * lengths).astype(np.int64)
    ref = _old_gather(ds, mean, std, episodes, last, 5, 3.0, 30)
    for key in ref:
        assert w[key].dtype == ref[key].dtype and w[key].tobytes() == ref[key].tobytes(), key
