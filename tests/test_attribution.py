"""Credit assignment (analysis/interp/attribution.py): known answers on a hand-built model, IG completeness,
aggregation, the Key-to-Door helpers, and a smoke on the shipped keydoor agents."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from analysis.interp import attribution as A
from analysis.interp import keydoor_credit as KD
from analysis.publish.entries import attribution as AE

ROOT = Path(__file__).resolve().parent.parent
L, OBS, NA = 6, 4, 3
KEY_POS, KEY_FEAT = 2, 1     # the one input that matters: state feature 1 at window position 2 (3 steps back)


class OneInput(nn.Module):
    """DT forward signature; every output is a nonlinear function of states[:, KEY_POS, KEY_FEAT] only."""

    def __init__(self):
        super().__init__()
        self.s = nn.Linear(L * OBS, 1)
        self.a = nn.Linear(L * NA, 1)
        self.r = nn.Linear(L, 1)
        self.head = nn.Linear(1, NA)
        with torch.no_grad():
            for lin in (self.s, self.a, self.r):
                lin.weight.zero_()
                lin.bias.zero_()
            self.s.weight[0, KEY_POS * OBS + KEY_FEAT] = 1.5
            self.head.weight.copy_(torch.tensor([[1.0], [-2.0], [0.5]]))
            self.head.bias.zero_()

    def forward(self, states, actions, returns_to_go, timesteps, attention_mask=None, rtg_known=True):
        B = states.shape[0]
        h = self.s(states.reshape(B, -1)) + self.a(actions.reshape(B, -1)) + self.r(returns_to_go.reshape(B, -1))
        y = torch.tanh(h) + 0.3 * h ** 2                                  # [B, 1], far from linear
        per_pos = y[:, None, :].expand(B, L, 1)
        return SimpleNamespace(action_preds=self.head(per_pos), return_preds=per_pos, value_preds=2 * per_pos)


def _inputs(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(B, L, OBS, generator=g)
    states[:, KEY_POS, KEY_FEAT] = torch.tensor([1.2, -0.8])[:B]
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, 0] = 0                                                       # one left-padded position
    return {"states": states, "actions": torch.nn.functional.one_hot(torch.randint(0, NA, (B, L), generator=g), NA).float(),
            "returns_to_go": torch.rand(B, L, 1, generator=g), "timesteps": torch.arange(L).expand(B, L),
            "attention_mask": mask}


BASE = A.Baseline(0.3, np.zeros(OBS, np.float32), np.full(NA, 1 / NA, np.float32), "test")


def _share_on_key(m: A.AttributionMap) -> float:
    total = sum(np.abs(a).sum() for a in m.features.values())
    return float(np.abs(m.features["state"][KEY_POS, KEY_FEAT]) / total)


@pytest.mark.parametrize("target", ["action", "return", "value"])
@pytest.mark.parametrize("method", ["ig", "saliency", "ablation"])
def test_all_credit_on_the_one_input_that_matters(target, method):
    model = OneInput()
    raw = A.attribute_inputs(model, _inputs(), target, method, BASE, action_index=torch.tensor([1, 2]))
    for b in range(2):
        m = raw.map(b, A.ADDITIVE[method])
        assert _share_on_key(m) > 0.9
        steps = m.per_step()
        assert steps[KEY_POS] / steps.sum() > 0.9
        assert m.per_token()[KEY_POS, 1] / m.per_token().sum() > 0.9        # the state token of that step
        if method == "ig":
            assert abs(m.delta) < 1e-3 * max(abs(m.output - m.baseline_output), 1e-2)
    # the randomized copy spreads its credit: the maps disagree
    rnd = A.attribute_inputs(A.randomized_copy(model, seed=0), _inputs(), target, method, BASE,
                             action_index=torch.tensor([1, 2]))
    mask = _inputs()["attention_mask"][0].bool().numpy()
    rho = A.map_spearman(raw.map(0, A.ADDITIVE[method]), rnd.map(0, A.ADDITIVE[method]), mask)
    assert rho < 0.3
    assert _share_on_key(rnd.map(0, A.ADDITIVE[method])) < 0.5


def test_ig_completeness_and_known_values():
    model = OneInput()
    x = _inputs()
    raw = A.attribute_inputs(model, x, "return", "ig", BASE, n_steps=2, delta_tol=1e-4)
    for b in range(2):
        m = raw.map(b, True)
        total = sum(a.sum() for a in m.features.values())
        # captum's delta is exactly the completeness gap, and it is small
        assert total - (m.output - m.baseline_output) == pytest.approx(m.delta, abs=1e-5)
        assert abs(m.delta) <= 1e-4 * max(abs(m.output - m.baseline_output), 0.01) + 1e-6
        # f(x) and f(baseline) by hand: h = 1.5 * s_key (baseline state 0)
        h = 1.5 * float(x["states"][b, KEY_POS, KEY_FEAT])
        assert m.output == pytest.approx(np.tanh(h) + 0.3 * h ** 2, abs=1e-5)
        assert m.baseline_output == pytest.approx(0.0, abs=1e-6)
        assert m.tokens.sum(1) == pytest.approx(m.steps, abs=1e-6)         # aggregates add up
        assert m.steps.sum() == pytest.approx(total, abs=1e-5)
    assert raw.n_steps > 2                                               # 2 Gauss-Legendre steps were not enough
    # left padding gets nothing
    assert all(np.all(a[1, 0] == 0) for a in raw.features.values())


def test_share_over_uniform_by_hand():
    v = [1, 1, 4, 2, 10]                     # oldest first, current step last
    assert A.share_over_uniform(v, 2) == pytest.approx(4 / 8 * 4)
    assert A.share_over_uniform(v, -3) == pytest.approx(2.0)
    assert A.share_over_uniform(v, 2, exclude_current=False) == pytest.approx(4 / 18 * 5)
    assert A.share_over_uniform([1, 1, 1, 7], 0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="current step"):
        A.share_over_uniform(v, 4)
    with pytest.raises(IndexError):
        A.share_over_uniform(v, 9)
    assert np.isnan(A.share_over_uniform([0, 0, 3], 0))


def test_key_door_steps_on_a_generated_episode():
    from envs.key_to_door import MOVES, KeyToDoorEnv

    env = KeyToDoorEnv()
    found = 0
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        observations, actions, picked, t = [], [], None, 0
        rng = np.random.default_rng(seed)
        done = False
        while not done:
            if obs[2] and obs[5] >= 0 and seed % 3:    # walk to the key (most seeds), else wander
                d = obs[5:7] - obs[0:2]
                a = int(np.argmax([(-d[0] > 0), (d[0] > 0), (-d[1] > 0), (d[1] > 0)]))
            else:
                a = int(rng.integers(4))
            observations.append(obs)
            actions.append(a)
            had = info["has_key"]
            obs, _, term, trunc, info = env.step(a)
            if info["has_key"] and not had:
                picked = t
            done, t = term or trunc, t + 1
        kd = A.key_door_steps(np.array(observations), np.array(actions))
        assert kd.key_step == picked
        assert kd.has_key == (picked is not None)
        assert kd.phase3_step == 15 and kd.phase2_step == 7    # 7 key steps + 8 distractor steps
        found += picked is not None
    assert found >= 3
    with pytest.raises(ValueError, match="9 features"):
        A.key_door_steps(np.zeros((4, 3)), np.zeros(4))
    assert MOVES.shape == (4, 2)


@pytest.fixture(scope="module")
def keydoor():
    import models
    from trajectories import load_dataset

    return (models.load_agent(ROOT / "sample_data/agents/keydoor-dt"),
            load_dataset(ROOT / "sample_data/datasets/keydoor.npz"))


@pytest.mark.parametrize("target,method", [("value", "ig"), ("action", "saliency"), ("return", "ablation")])
def test_keydoor_dt_smoke(keydoor, target, method):
    agent, ds = keydoor
    res = A.attribute_step(agent, ds, episode=1, target=target, method=method)
    K, T = agent.context_length, len(ds.episode(1))
    assert res.step == T - 1 and res.window_steps.shape == (K,)
    assert res.mask.sum() == T and list(res.window_steps[res.mask]) == list(range(T))
    for m in (res.trained, res.randomized):
        assert m.features["state"].shape == (K, 9) and m.features["action"].shape == (K, 4)
        assert m.features["return-to-go"].shape == (K, 1)
        assert all(np.isfinite(a).all() for a in m.features.values())
        assert m.tokens.shape == (K, 3) and m.steps.shape == (K,) and np.isfinite(m.per_step()).all()
    if target == "value":   # R tokens are hidden from the value head: no credit
        assert np.all(res.trained.features["return-to-go"] == 0)
        assert abs(res.trained.delta) < 0.01 * abs(res.trained.output - res.trained.baseline_output)
    assert -1 <= res.spearman <= 1
    assert res.markers == {"key picked up": 2, "phase 3": 15}
    share = res.share_over_uniform(2)
    assert np.isfinite(share) and share >= 0
    df = res.to_frame()
    assert len(df) == T * (1 + 9 + 4) and set(df.modality) == {"return-to-go", "state", "action"}
    assert "agent_row" in set(df.feature)
    steps = res.steps_frame()
    assert len(steps) == T and steps.step_share.sum() == pytest.approx(1.0)
    feats = res.features_frame()
    assert len(feats) == 14 and feats.share.sum() == pytest.approx(1.0)
    if method != "ablation":   # additive maps: the per-feature and per-step totals are the same |attribution|
        assert feats.abs_attribution.sum() == pytest.approx(steps.step_total.sum(), rel=1e-5)


def test_keydoor_mlp_and_bad_input(keydoor):
    import models

    agent, ds = keydoor
    mlp = models.load_agent(ROOT / "sample_data/agents/keydoor-mlp")
    res = A.attribute_step(mlp, ds, episode=1, step=3, target="action", method="ig")
    assert list(res.feature_names) == ["state"] and res.trained.features["state"].shape == (1, 9)
    assert abs(res.trained.delta) < 0.01 * max(abs(res.trained.output - res.trained.baseline_output), 0.01)
    assert res.trained.per_token()[0, 0] == 0 and res.trained.per_token()[0, 1] > 0
    with pytest.raises(ValueError, match="predicts only actions"):
        A.attribute_step(mlp, ds, target="value")
    with pytest.raises(ValueError, match="unknown target"):
        A.attribute_step(agent, ds, target="reward")
    with pytest.raises(ValueError, match="step must lie"):
        A.attribute_step(agent, ds, episode=1, step=99)


def test_gru_history_attribution():
    import models
    from trajectories import load_dataset

    gru = models.load_agent(ROOT / "sample_data/agents/masked-cartpole-gru")
    ds = load_dataset(ROOT / "sample_data/datasets/masked-cartpole.npz")
    res = A.attribute_steps(gru, ds, [5, 12], "action", "ig")
    assert [r.step for r in res] == [5, 12]
    for r, T in zip(res, (6, 13)):                  # the window is the whole episode so far
        assert list(r.window_steps) == list(range(T))
        assert r.trained.features["state"].shape == (T, 2) and r.trained.features["action"].shape == (T, 2)
        assert np.all(r.trained.features["action"][-1] == 0)     # a_t is read only after step t
        assert abs(r.trained.delta) <= 0.01 * max(abs(r.trained.output - r.trained.baseline_output), 0.01)
        assert np.isfinite(r.spearman)


def test_key_door_credit_and_catalog(keydoor):
    agent, ds = keydoor
    credit = KD.key_door_credit(agent, ds, target="value", method="saliency", max_episodes=4)
    df = credit.to_frame()
    assert len(df) == 4 and (df.key_step < df.explained_step).all()
    assert np.isfinite(df.share_over_uniform).all() and np.isfinite(df.randomized_share_over_uniform).all()
    assert {"share_after_key", "randomized_share_after_key", "ig_delta"} <= set(df.columns)

    from analysis.publish import catalog
    assert {"attribution_timesteps", "attribution_features", "attribution_keydoor"} <= set(catalog._REGISTRY)
    fig = AE.make_attribution_timesteps(agent, ds, episode=1, target="return", method="saliency")
    assert fig.params == {"episode": 1, "step": 17, "target": "return", "method": "saliency", "seed": 0}
    assert len(fig.data) == 18 and "randomized_step_total" in fig.data
    assert "Spearman" in " ".join(a.text for a in fig.figure.layout.annotations)
    feats = AE.make_attribution_features(agent, ds, episode=1, step=15, target="value")
    assert len(feats.data) == 16 * 14 and len(feats.figure.data) == 2


# ---- shaped observations (issue 23): grids and frame stacks ---------------------------------------------------------
def _shaped_pairs():
    from test_shaped_views import atari_dataset, atari_dt, memory

    return {"memory": memory(), "atari": (atari_dt(K=4, n_layer=2, hidden=32), atari_dataset(lengths=(6, 7, 5, 8)))}


@pytest.fixture(scope="module")
def shaped_pairs():
    return _shaped_pairs()


@pytest.mark.parametrize("name", ["memory", "atari"])
def test_state_token_credit_equals_the_spatial_map_over_its_cells(shaped_pairs, name):
    """Per-token credit on a grid / frame-stack agent: the state token of every step gets the sum of the spatial map
    over its cells (same method, same baseline): saliency with every input attributed, IG along the states-only path
    spatial credit takes (return-to-go and actions held), from the dataset's mean observation and from zeros."""
    from analysis.core.inputs import training_data
    from analysis.interp import spatial_credit as sc

    agent, ds = shaped_pairs[name]
    data = training_data(agent, ds)
    steps = (ds.episode_ends - 1)[:3 if name == "memory" else 1]   # a frame-stack IG doubles its steps to ~1,024
    sal = A.attribute_steps(agent, ds, steps, method="saliency", randomized=False, data=data)
    spatial = sc.spatial_credit(agent, ds, steps, method="saliency", data=data)
    for r, s in zip(sal, spatial):
        assert r.trained.features["state"].shape == (agent.context_length, int(np.prod(ds.obs_shape)))
        assert np.array_equal(r.window_steps, s.window_steps)
        np.testing.assert_allclose(r.trained.tokens[:, 1], s.totals, rtol=1e-4, atol=1e-7)
        assert s.totals[s.mask].min() > 0
    # frame stacks: IG from zeros only (its steps double to 256; from the mean frame to 512, 50 s of the suite);
    # the mean baseline's agreement between the two paths is the same code, checked on the grid agent
    for states in ("mean", "zeros") if name == "memory" else ("zeros",):
        b = A.dataset_baseline(agent, data, states=states)
        ig = A.attribute_steps(agent, ds, steps, method="ig", randomized=False, data=data, baseline=b,
                               modalities=("state",))
        sp = sc.spatial_credit(agent, ds, steps, method="ig", baseline=states, data=data)
        for r, s in zip(ig, sp):
            assert r.feature_names.keys() == {"state"} and r.trained.tokens[:, [0, 2]].sum() == 0
            assert r.trained.output == pytest.approx(s.output, abs=1e-5)
            assert r.trained.baseline_output == pytest.approx(s.baseline_output, abs=1e-5)
            np.testing.assert_allclose(r.trained.tokens[:, 1], s.totals, rtol=1e-3, atol=1e-5)
            diff = r.trained.output - r.trained.baseline_output
            assert r.trained.steps.sum() == pytest.approx(diff, rel=1e-2, abs=1e-5)   # complete (delta_tol 1%)


@pytest.mark.parametrize("name", ["memory", "atari"])
def test_per_token_credit_on_shaped_agents(shaped_pairs, name):
    """Every method and target on a grid / frame-stack DT: maps in the window's shape, IG complete over R, s and a
    from the dataset-mean baseline (a frame / grid of the observation's shape), ablation per token and step (per
    feature where the window has at most ABLATION_FEATURES state values: the 980-value one-hot grid does not, so NaN)."""
    from analysis.core.inputs import training_data

    agent, ds = shaped_pairs[name]
    data = training_data(agent, ds)
    b = A.dataset_baseline(agent, data)
    D = int(np.prod(ds.obs_shape))
    assert b.states.shape == (D,) and b.description.startswith("dataset-mean state")
    raw_mean = np.asarray(ds.observations, np.float64).mean(0)
    np.testing.assert_allclose(b.states, data.obs_transform(raw_mean[None])[0].reshape(-1), atol=1e-4)   # affine
    assert np.all(A.dataset_baseline(agent, data, states="zeros").states == 0)
    K = agent.context_length
    step = int(ds.episode_ends[1] - 1)
    for target in ("action", "value", "return"):
        r = A.attribute_steps(agent, ds, [step], target=target, method="ig", data=data)[0]
        assert r.trained.features["state"].shape == (K, D) and len(r.feature_names["state"]) == D
        diff = r.trained.output - r.trained.baseline_output
        assert r.trained.steps.sum() == pytest.approx(diff, rel=1e-2, abs=1e-5)
        assert np.isfinite(r.spearman) and len(r.steps_frame()) == int(r.mask.sum())
    if name == "memory":
        # the observation's own C order, channels innermost (the shipped view: 7x7x20 one-hot bits)
        assert r.feature_names["state"][:3] == ["(0, 0, 0)", "(0, 0, 1)", "(0, 0, 2)"]
        assert r.feature_names["state"][19:21] == ["(0, 0, 19)", "(0, 1, 0)"]
    ab = A.attribute_steps(agent, ds, [step], method="ablation", data=data)[0]
    assert ab.trained.tokens.shape == (K, 3) and np.isfinite(ab.trained.tokens).all()
    assert np.isnan(ab.trained.features["state"][ab.mask]).all() and np.isfinite(ab.trained.features["action"]).all()
    assert np.isfinite(ab.spearman)   # the state modality ranked by its token
    sal = A.attribute_steps(agent, ds, [step], method="saliency", data=data)[0]
    assert (sal.trained.per_token()[sal.mask, 1] > 0).all()
    with pytest.raises(ValueError, match="the state baseline must be one of mean, zeros, got 'black'"):
        A.dataset_baseline(agent, data, states="black")
    with pytest.raises(ValueError, match="modalities must be some of the inputs this agent reads"):
        A.attribute_steps(agent, ds, [step], data=data, modalities=("pixels",))


def test_integrated_gradients_in_chunks_equal_one_batch_on_frame_stacks(shaped_pairs, monkeypatch):
    """IG's interpolated windows run in chunks of at most IG_VALUES input values (a 30-step Atari window is 847k
    values): chunks of 4 windows (no fewer than the batch) give the maps and delta of one batch of 64."""
    agent, ds = shaped_pairs["atari"]
    steps = ds.episode_ends - 1
    kw = dict(method="ig", randomized=False, n_steps=16, max_n_steps=16)
    one = A.attribute_steps(agent, ds, steps, **kw)
    per_window = agent.context_length * (int(np.prod(ds.obs_shape)) + 1 + int(agent.config.n_actions))
    monkeypatch.setattr(A, "IG_VALUES", 3 * per_window)
    chunked = A.attribute_steps(agent, ds, steps, **kw)
    for r, c in zip(one, chunked):
        assert np.abs(r.trained.features["state"]).max() > 1e-6
        np.testing.assert_allclose(c.trained.features["state"], r.trained.features["state"], atol=1e-7, rtol=1e-4)
        assert c.trained.delta == pytest.approx(r.trained.delta, abs=1e-6)
