"""A Trajectory Transformer's ablation and head-output patching (analysis/interp/tt_causal.py): known answers on tiny
made-up TTs (nothing ablated or patched is the plain forward, a constant head's ablation changes nothing,
patching every head and MLP gives the clean logits wherever the tokens agree) and on pendulum-tt (the batched
layer x head grid equals one patch at a time), plus one sentence for bad input."""
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.publish import catalog
from analysis.interp.components import (ablation_interventions, ablation_means, parse_ablation, tt_window_starts,
                                        tt_window_tokens)
from analysis.interp.tt_causal import decode, tt_ablation, tt_head_patching, tt_patch, tt_patching_inputs
from models import load_agent
from models.base import AgentConfig
from models.errors import AgentError
from models.trajectory_transformer import TrajectoryTransformer
from trajectories import Dataset, load_dataset

ROOT = Path(__file__).resolve().parent.parent


def made_up_data(seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    lengths = [30, 25, 40]
    n = sum(lengths)
    obs = np.cumsum(rng.normal(size=(n, 2)), 0).astype(np.float32) * 0.3
    term = np.zeros(n, bool)
    term[np.cumsum(lengths) - 1] = True
    return Dataset(obs, rng.uniform(-1, 1, (n, 1)).astype(np.float32), rng.normal(size=n).astype(np.float32), term,
                   np.zeros(n, bool), np.concatenate([[0], np.cumsum(lengths)[:-1]]), obs_names=["x", "y"], source="made-up")


def tiny_tt(data, seed=0, double=False) -> TrajectoryTransformer:
    torch.manual_seed(seed)
    cfg = AgentConfig(kind="tt", obs_dim=2, act_dim=1, discrete=False, context_length=4,
                      hparams={"n_bins": 8, "hidden": 16, "n_layer": 2, "n_head": 2})
    m = TrajectoryTransformer.for_dataset(cfg, data)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
    m.eval()
    return m.double() if double else m


def constant_head(tt: TrajectoryTransformer, layer: int, head: int) -> TrajectoryTransformer:
    """Zero one head's value projection (weights and bias): its head_out is exactly 0 everywhere."""
    attn = tt.blocks[layer].attn
    C = attn.c_attn.in_features
    hd = C // attn.n_head
    rows = slice(2 * C + head * hd, 2 * C + (head + 1) * hd)
    with torch.no_grad():
        attn.c_attn.weight[rows] = 0
        attn.c_attn.bias[rows] = 0
    assert not attn.W_V[head].any() and not attn.b_V[head].any()
    return tt


@pytest.fixture(scope="module")
def data():
    return made_up_data()


@pytest.fixture(scope="module")
def pendulum():
    return (load_agent(ROOT / "sample_data" / "agents" / "pendulum-tt"),
            load_dataset(ROOT / "sample_data" / "datasets" / "pendulum.npz"))


# ---- ablation ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def test_nothing_ablated_is_the_plain_forward_and_a_constant_head_changes_nothing(data):
    tt = constant_head(tiny_tt(data), layer=1, head=0)
    starts, W = tt_window_starts(tt, data, 8, seed=0)
    assert W == 4 and len(starts) == 8
    inputs = torch.as_tensor(tt_window_tokens(tt, tt.tokenize(data), starts, W))
    assert inputs.shape == (8, 4 * tt.D - 1)
    plain = tt(inputs).logits
    out, _ = tt.run_with_cache(inputs, [], {})
    assert torch.equal(out.logits, plain)
    means = ablation_means(tt, data, n_windows=16)
    assert means["blocks.1.attn.head_out"].shape == (2, 16) and not means["blocks.1.attn.head_out"][0].any()
    for mode in ("zero", "mean"):
        iv = ablation_interventions(tt, parse_ablation(tt, ["L1H0"]), mode, means)
        assert torch.equal(tt.run_with_cache(inputs, [], iv)[0].logits, plain)
        res = tt_ablation(tt, data, ["L1H0"], mode=mode, n_windows=20)
        assert all(d.mean == 0.0 for d in res.difference) and not res.changed.any()
        assert np.array_equal(res.errors_intact, res.errors_ablated)
    # a head and an MLP that matter change the predictions
    for ablate in (["L1H1"], ["L0MLP"]):
        res = tt_ablation(tt, data, ablate, n_windows=20, decoding="mean")
        assert res.changed.max() > 0 and not np.array_equal(res.errors_intact, res.errors_ablated)


@torch.no_grad()
def test_tt_ablation_errors_are_the_decoded_predictions_against_the_data(data):
    tt = tiny_tt(data, seed=1)
    res = tt_ablation(tt, data, ["L0H1"], n_windows=12, seed=3)
    assert res.dims == ["x", "y", "reward", "value", "state (L2)"] and res.window == 4 and res.n_windows == 12
    # by hand for the first window: obs of transitions 1..3, reward and value of 0..3, argmax bin centres
    from models.tt_tokens import dataset_transitions

    s = tt_window_starts(tt, data, 12, 3)[0][0]
    logits = tt(torch.as_tensor(tt_window_tokens(tt, tt.tokenize(data), np.array([s]), 4))).logits[0]
    raw = dataset_transitions(data, tt.hp["discount"])[s:s + 4]
    D = tt.D
    pred_x = [tt.discretizer.centres[0][int(logits[k * D - 1, :tt.N].argmax())] for k in (1, 2, 3)]
    assert res.errors_intact[0, 0] == pytest.approx(np.abs(np.array(pred_x) - raw[1:, 0]).mean())
    pred_r = [tt.discretizer.centres[3][int(logits[k * D + 2, :tt.N].argmax())] for k in range(4)]
    assert res.errors_intact[2, 0] == pytest.approx(np.abs(np.array(pred_r) - raw[:, 3]).mean())
    for e in res.intact + res.ablated + res.difference:
        assert e.ci_low <= e.mean <= e.ci_high
    again = tt_ablation(tt, data, ["L0H1"], n_windows=12, seed=3)
    assert np.array_equal(again.errors_ablated, res.errors_ablated)
    frame = res.to_frame()
    assert list(frame["dimension"]) == res.dims and (frame["ablate"] == "L0H1").all()


def test_decode_matches_the_discretizer(data):
    tt = tiny_tt(data)
    logits = torch.randn(5, tt.N + 1)
    v, b = decode(tt, logits, 1, "argmax")
    top = logits[:, :tt.N].argmax(-1).numpy()
    assert np.array_equal(v, tt.discretizer.centres[1][top]) and np.array_equal(b, top)
    m, _ = decode(tt, logits, 1, "mean")
    np.testing.assert_allclose(m, logits[:, :tt.N].double().softmax(-1).numpy() @ tt.discretizer.centres[1])


# ---- patching ---------------------------------------------------------------------------------------------------
@torch.no_grad()
@pytest.mark.parametrize("how", ["observation", "earlier transition", "two windows"])
def test_patching_everything_gives_clean_where_tokens_agree_and_nothing_gives_corrupted(data, how):
    tt = tiny_tt(data, seed=2, double=True)         # float64: equal to 1e-10 is the algebra, not rounding
    kw = {"observation": dict(back=0), "earlier transition": dict(back=1), "two windows": dict(corrupted=(2, 20))}[how]
    pin = tt_patching_inputs(tt, data, (0, 10), **kw)
    assert pin.past == 2 and len(pin.clean) == len(pin.corrupted) == 3 * tt.D + 2 - 1
    clean = tt(torch.as_tensor(pin.clean)[None]).logits[0]
    corrupted = tt(torch.as_tensor(pin.corrupted)[None]).logits[0]
    agree = torch.as_tensor(pin.clean == pin.corrupted)
    agree |= torch.as_tensor(tt.token_dims(torch.arange(len(pin.clean))) == tt.D - 1)   # value positions read value_emb
    everything = tt_patch(tt, pin.clean, pin.corrupted, "all")
    np.testing.assert_allclose(everything[agree].numpy(), clean[agree].numpy(), atol=1e-10)
    assert torch.equal(tt_patch(tt, pin.clean, pin.corrupted, []), corrupted)
    assert (everything[~agree] - clean[~agree]).abs().max() > 1e-3   # where the tokens differ, the embedding differs
    read = np.concatenate(list(pin.positions.values()))
    if how != "two windows":                           # the prediction's positions hold the same tokens: clean exactly
        assert agree[read].all()
    # all heads of a layer = that layer's attention output (head_out leaves out the projection bias)
    _, cache = tt.run_with_cache(torch.as_tensor(pin.clean)[None], ["blocks.1.attn.out"])
    by_out, _ = tt.run_with_cache(torch.as_tensor(pin.corrupted)[None], [],
                                  {"blocks.1.attn.out": lambda h: cache["blocks.1.attn.out"]})
    np.testing.assert_allclose(tt_patch(tt, pin.clean, pin.corrupted, ["L1H*"]).numpy(), by_out.logits[0].numpy(), atol=1e-10)


@torch.no_grad()
def test_head_patching_grid_equals_one_patch_at_a_time(pendulum):
    tt, ds = pendulum
    res = tt_head_patching(tt, ds, (3, 80), back=0, seed=1)
    assert res.columns == ["H0", "H1", "H2", "H3", "MLP"] and res.n_layer == 3 and res.past == 10
    assert res.dims["state"] == ["cos_theta", "sin_theta", "angular_velocity"] and res.dims["reward"] == ["reward"]
    pin = tt_patching_inputs(tt, ds, (3, 80), back=0, seed=1)
    scale = ds.observations.std(0).astype(np.float64)

    def predicted(logits, t):
        return np.array([decode(tt, logits[q], int(d), "mean")[0] for q, d in zip(pin.positions[t], pin.dims[t])])
    clean = tt(torch.as_tensor(pin.clean)[None]).logits[0]
    corrupted = tt(torch.as_tensor(pin.corrupted)[None]).logits[0]
    for t in ("state", "reward"):
        np.testing.assert_allclose(res.clean[t], predicted(clean, t))
        np.testing.assert_allclose(res.corrupted[t], predicted(corrupted, t))
    for i in range(3):
        for j, col in enumerate(res.columns):
            one = predicted(tt_patch(tt, pin.clean, pin.corrupted, [f"L{i}{col}"]), "state")
            np.testing.assert_allclose(res.patched["state"][i, j], one, atol=1e-5)
            gap = (res.clean["state"] - res.corrupted["state"]) / scale
            want = ((one - res.corrupted["state"]) / scale) @ gap / (gap @ gap)
            assert res.effect["state"][i, j] == pytest.approx(want, abs=1e-4)
    assert np.isfinite(res.effect["state"]).all() and np.abs(res.effect["state"]).max() > 0.1
    np.testing.assert_allclose(res.logged["state"], ds.observations[ds.episode_starts[3] + 81])
    frame = res.to_frame("reward")
    assert len(frame) == 3 * 5 and set(frame["target"]) == {"reward"}


def test_bad_input_is_one_sentence(data, pendulum):
    tt = tiny_tt(data)
    dt_like = load_agent(ROOT / "sample_data" / "agents" / "cartpole-dt")
    cases = [
        (lambda: tt_ablation(dt_like, load_dataset(ROOT / "sample_data" / "datasets" / "cartpole.npz"), ["L0H0"]), AgentError,
         "Trajectory Transformer's token predictions"),
        (lambda: tt_ablation(tt, data, []), ValueError, "choose at least one head or MLP"),
        (lambda: tt_ablation(tt, data, ["L5H0"]), ValueError, "there is no L5H0"),
        (lambda: tt_ablation(tt, data, ["L0H0"], decoding="median"), ValueError, "decoding must be"),
        (lambda: tt_patching_inputs(tt, data, (7, 3)), ValueError, "episode 7 does not exist"),
        (lambda: tt_patching_inputs(tt, data, (0, 29)), ValueError, "needs a logged one after it"),
        (lambda: tt_patching_inputs(tt, data, (0, 10), back=3), ValueError, "back must be 0-2"),
        (lambda: tt_patching_inputs(tt, data, (0, 10), n_transitions=5), ValueError, "n_transitions must be 0-2"),
        (lambda: tt_patch(tt, np.zeros(5, np.int64), np.zeros(6, np.int64)), ValueError, "the same length"),
        (lambda: catalog.make("tt_patching_heads", *pendulum, target="action"), ValueError, "target must be"),
    ]
    for call, err, match in cases:
        with pytest.raises(err, match=match) as e:
            call()
        assert "\n" not in str(e.value)


def test_catalog_entries(pendulum):
    tt, ds = pendulum
    f = catalog.make("tt_ablation", tt, ds, n_windows=24, mode="mean")
    assert f.params == {"ablate": ["L2H0", "L2H1", "L2H2", "L2H3"], "mode": "mean", "n_windows": 24, "seed": 0, "decoding": "argmax"}
    assert list(f.data["dimension"]) == ["cos_theta", "sin_theta", "angular_velocity", "reward", "value", "state (L2)"]
    assert f.data["obs_quantization_floor"].iloc[0] == pytest.approx(tt.hp["obs_quantization_floor"])
    f = catalog.make("tt_patching_heads", tt, ds, episode=2, corrupted_episode=5, target="reward")
    assert f.params["step"] == ds.episode_lengths[2] // 2 - 1 and "vs episode 5" in f.data["pair"].iloc[0]
    assert f.figure.data[0].z.shape == (3, 5)
