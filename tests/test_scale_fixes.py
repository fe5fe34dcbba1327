"""What `bench --scale`'s Atari pair needed (issue 23 item 6), each against the plain computation it replaces: the conv
state encoder runs once per distinct frame, shaped windows are
transformed per distinct frame, the DT's untrained state head is computed on first read, and a shaped dataset's
statistics are summed a block at a time."""
import numpy as np
import torch

from models.state_encoders import AtariConv, distinct_rows


def _frames(n=12, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 4, 84, 84)).astype(np.float32) / 255)


def test_distinct_rows_groups_equal_rows_only():
    f = _frames(5).reshape(5, -1)
    rows = f[torch.tensor([3, 1, 3, 0, 1, 1])]
    rows[5, 7] += 1e-7 if rows[5, 7] < 0.5 else -1e-7   # one value one ulp-ish off: a frame of its own
    keys, first, inverse = distinct_rows(rows)
    assert len(first) == 4 and len(keys) == 4
    torch.testing.assert_close(rows[first][inverse], rows, rtol=0, atol=0)
    assert inverse[0] == inverse[2] and inverse[1] == inverse[4] != inverse[5]


def test_the_conv_encoder_on_windows_equals_each_frame_encoded_alone():
    torch.manual_seed(0)
    enc = AtariConv((4, 84, 84), 16).eval()
    frames = _frames(12)
    windows = frames[torch.arange(9)[:, None] + torch.arange(4)[None, :]]   # [9, 4, ...]: consecutive windows overlap
    with torch.inference_mode():
        got = enc(windows)
        want = torch.stack([torch.cat([torch.nn.Sequential.forward(enc, w[None]) for w in win]) for win in windows])
    assert got.shape == (9, 4, 16)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        enc[0].weight.mul_(2)                             # new weights: the next call encodes with them
    with torch.inference_mode():
        again = enc(windows[:1])
        fresh = torch.cat([torch.nn.Sequential.forward(enc, w[None]) for w in windows[0]])
    torch.testing.assert_close(again[0], fresh, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(again[0], got[0])


def test_distinct_frames_are_encoded_in_their_order_so_all_distinct_batches_are_unchanged():
    torch.manual_seed(0)
    enc = AtariConv((4, 84, 84), 16).eval()
    x = _frames(6)[None]                                   # six distinct frames: the batch the plain encoder runs
    _, first, inverse = distinct_rows(x.reshape(6, -1))
    assert first.tolist() == list(range(6)) and inverse.tolist() == list(range(6))
    with torch.inference_mode():
        torch.testing.assert_close(enc(x)[0], torch.nn.Sequential.forward(enc, x[0]), rtol=0, atol=0)


def test_pixel_gradients_reach_every_window_position():
    torch.manual_seed(0)
    enc = AtariConv((4, 84, 84), 8).eval()
    frame = _frames(1)[0]
    x = torch.stack([frame, frame])[None].clone().requires_grad_(True)   # the same frame at two positions
    enc(x)[0, 1].sum().backward()
    assert x.grad[0, 0].abs().sum() == 0 and x.grad[0, 1].abs().sum() > 0


def test_shaped_windows_equal_the_transform_of_every_gathered_frame():
    from models.windows import TrainingData, episode_windows
    from trajectories import Dataset

    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (20, 2, 3, 3), dtype=np.uint8)
    ds = Dataset(obs, rng.integers(0, 3, 20), np.ones(20, np.float32), np.zeros(20, bool), np.zeros(20, bool),
                 np.array([0, 8]))
    mean, std = rng.random(18).astype(np.float32), 1 + rng.random(18).astype(np.float32)
    w = episode_windows(TrainingData.build(ds, mean, std, 1.0, 100), 1, 5)
    idx = np.arange(8, 20)[:, None] - np.arange(4, -1, -1)[None, :]
    want = (obs[np.maximum(idx, 8)].astype(np.float32) - mean.reshape(2, 3, 3)) / std.reshape(2, 3, 3)
    want[idx < 8] = 0
    np.testing.assert_array_equal(w["obs"], want)


def test_the_state_head_read_late_equals_the_head_on_the_tokens():
    from bench.scale_data import make_atari_agent

    agent = make_atari_agent(100)
    rng = np.random.default_rng(0)
    kw = {"states": torch.from_numpy(rng.random((2, 3, 4, 84, 84)).astype(np.float32)),
          "actions": torch.nn.functional.one_hot(torch.tensor([[0, 1, 2], [3, 0, 1]]), 4).float(),
          "returns_to_go": torch.ones(2, 3, 1), "timesteps": torch.tensor([[0, 1, 2], [5, 6, 7]]),
          "attention_mask": torch.ones(2, 3, dtype=torch.long)}
    with torch.inference_mode():
        out = agent(**kw)
        _, cache = agent.run_with_cache(kw, names=["head.state", "ln_final.out"])
        x = cache["ln_final.out"].reshape(2, 3, 3, -1)
        want = agent.predict_state(x[:, :, 2])
    late = out.state_preds   # read after the inference-mode block: computed now, in that mode
    assert late.shape == (2, 3, 4 * 84 * 84) and late.is_inference()
    torch.testing.assert_close(late, cache["head.state"])
    torch.testing.assert_close(late, want)


def test_blocked_statistics_equal_numpy_on_frame_stacks():
    from models.env_choice import _blocked_statistics

    obs = np.random.default_rng(0).integers(0, 256, (1000, 2, 4, 4), dtype=np.uint8)
    obs[:, 0, 0, 0] = 7   # a constant pixel: std 1, as for vectors
    mean, std = _blocked_statistics(obs.reshape(1000, -1), rows=96)
    flat = obs.reshape(1000, -1).astype(np.float64)
    np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, np.where(flat.std(0) > 1e-6, flat.std(0), 1.0), rtol=1e-9)
    assert std[0] == 1.0


def test_rows_taken_from_a_map_equal_the_mapped_rows(tmp_path):
    from trajectories.digest import map_array, take_rows

    data = np.random.default_rng(0).integers(0, 256, (50, 3, 5), dtype=np.uint8)
    (tmp_path / "x.bin").write_bytes(b"head" + data.tobytes())
    arr = map_array(tmp_path / "x.bin", 4, np.uint8, data.shape)
    rows = np.array([0, 1, 2, 7, 20, 21, 49])
    np.testing.assert_array_equal(take_rows(arr, rows), data[rows])
    np.testing.assert_array_equal(take_rows(arr[10:], np.array([0, 3])), data[[10, 13]])   # a slice: through the map
    assert take_rows(arr, np.array([], np.int64)).shape == (0, 3, 5)
