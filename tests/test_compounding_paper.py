"""The TT paper's compounding-error finding (issue 24, item 2): its metrics on synthetic curves with known answers,
the memory finding's metrics, the curves' bootstrap band, and the history-free TT reading no history."""
import numpy as np
import pytest

from analysis.research import compounding_paper as cp
from analysis.research import memory_pendulum as mp


def _raw(S=5, H=cp.H_MAX):
    """Per start s and horizon h: tt = 0.01 h, tt_no_history = 0.02 h, one_step_history = 0.001 h^2 + s / 100,
    one_step = 0.002 h^2 (+ s / 100 on the history one only, so pairing is visible)."""
    h = np.arange(1, H + 1)[None, :].astype(float)
    s = np.arange(S)[:, None] / 100
    e = np.stack([0.01 * h + 0 * s, 0.02 * h + 0 * s, 0.001 * h ** 2 + s, 0.002 * h ** 2 + 0 * s], 1)
    return {"pendulum": e, "pendulum_floor": 0.008}


def test_metrics_read_the_paired_curves():
    raw = _raw()
    m = cp.METRICS
    assert m["pendulum_tt_minus_one_step_h100"](raw) == pytest.approx(1.0 - 20.0)
    assert m["pendulum_tt_minus_one_step_h10"](raw) == pytest.approx(0.1 - 0.2)
    assert m["pendulum_tt_minus_one_step_h1"](raw) == pytest.approx(0.01 - 0.002)
    assert m["pendulum_tt_over_one_step_h10"](raw) == pytest.approx(0.5)
    assert m["pendulum_tt_history_effect_h100"](raw) == pytest.approx(1.0 - 2.0)
    # one_step_history - one_step at 100: 10 + mean(s)/100 - 20, mean s = 2 -> 0.02
    assert m["pendulum_one_step_history_effect_h100"](raw) == pytest.approx(10.02 - 20.0)
    assert m["pendulum_sequence_effect_h10"](raw) == pytest.approx(0.1 - (0.1 + 0.02))
    assert m["pendulum_sequence_effect_no_history_h1"](raw) == pytest.approx(0.02 - 0.002)
    assert m["pendulum_one_step_h100"](raw) == pytest.approx(20.0)
    assert m["pendulum_tt_growth_h100"](raw) == pytest.approx(100.0)
    assert m["pendulum_one_step_growth_h100"](raw) == pytest.approx(10_000.0)
    assert m["pendulum_tt_floor"](raw) == 0.008
    # the pooled bootstrap resamples rows: a resample of the starts changes only what depends on s
    rows = np.array([4, 4, 4, 4, 4])
    r2 = {"pendulum": raw["pendulum"][rows], "pendulum_floor": 0.008}
    assert m["pendulum_tt_minus_one_step_h100"](r2) == pytest.approx(-19.0)
    assert m["pendulum_one_step_history_effect_h100"](r2) == pytest.approx(10.04 - 20.0)


def test_metric_names_cover_every_task_model_and_horizon():
    for task in cp.TASKS:
        for h in cp.HORIZONS:
            for m in cp.MODELS:
                assert f"{task}_{m}_h{h}" in cp.METRICS
        assert f"{task}_tt_minus_one_step_h{cp.H_MAX}" in cp.METRICS
    assert cp.H_MAX == 100 and cp.HORIZONS[-1] == 100


def test_curve_ci_brackets_the_mean_and_is_zero_width_without_spread():
    rng = np.random.default_rng(0)
    e = rng.normal(1.0, 0.2, size=(400, 3)) * np.array([1, 2, 3])
    lo, hi = cp.curve_ci(e, seed=0)
    mean = e.mean(0)
    assert np.all(lo < mean) and np.all(mean < hi)
    # the half-width of a mean's 95% interval: ~1.96 sd / sqrt(n)
    np.testing.assert_allclose((hi - lo) / 2, 1.96 * e.std(0) / 20, rtol=0.15)
    lo, hi = cp.curve_ci(np.ones((30, 4)), seed=0)
    np.testing.assert_allclose(lo, 1.0) and np.testing.assert_allclose(hi, 1.0)


def test_memory_metrics():
    errors = np.array([[0.1, 0.5, 0.4], [0.3, 0.7, 0.6]])
    raw = {"masked": errors, "horizon": 10, "tt_context": 2}
    assert mp.METRICS["history_minus_no_history"](raw) == pytest.approx(-0.4)
    assert mp.METRICS["tt_minus_one_step"](raw) == pytest.approx(-0.3)
    assert mp.METRICS["no_history_minus_one_step"](raw) == pytest.approx(0.1)
    assert mp.METRICS["one_step_error"](raw) == pytest.approx(0.5)


def _tiny_tt(context_length):
    import torch

    from models.train import make_config
    from models.trajectory_transformer import TrajectoryTransformer
    from trajectories import load_dataset
    from trajectories.samples import SAMPLE_DIR

    torch.manual_seed(0)
    ds = load_dataset(SAMPLE_DIR / "pendulum.npz")
    cfg = make_config("tt", ds, context_length, {"hidden": 16, "n_layer": 1, "n_head": 2, "n_bins": 20, "dropout": 0.0})
    return TrajectoryTransformer.for_dataset(cfg, ds).eval(), ds


def test_a_two_transition_tt_predicts_states_from_the_current_transition_only():
    """K = 2 (the history-free TT): the window is cropped before each next state, so a logged transition before the
    start changes no predicted state; with K = 3 it does (random weights attend to whatever they see)."""
    from analysis.behaviour.predictions import open_loop

    starts = np.array([20, 450, 3010])
    for K, same in ((2, True), (3, False)):
        tt, ds = _tiny_tt(K)
        with_past, _ = open_loop(tt, ds, starts, 6, 1)
        without, _ = open_loop(tt, ds, starts, 6, 0)
        assert np.array_equal(with_past, without) == same


def test_a_tt_rolls_far_past_its_window_and_its_cache_stays_exact():
    """H = 12 transitions through a K = 3 window: the window slides (oldest transitions cropped, cache rebuilt); the
    cached decoder and the full forward per token agree on every predicted token."""
    from analysis.behaviour.predictions import _actions

    tt, ds = _tiny_tt(3)
    starts = np.array([30, 700])
    tok = tt.encode_transitions(ds.observations, ds.actions, ds.rewards)
    ctx = np.concatenate([tok[starts - 1].reshape(2, -1), tok[starts, :tt.obs_dim]], 1)
    acts = _actions(ds, starts[:, None] + np.arange(12)[None, :])
    cached, full = tt.predict_trajectory(ctx, acts, use_cache=True), tt.predict_trajectory(ctx, acts, use_cache=False)
    assert cached.observations.shape == (2, 12, tt.obs_dim) and np.isfinite(cached.observations).all()
    np.testing.assert_array_equal(cached.tokens, full.tokens)


@pytest.mark.slow   # ~1-2 min on 2 shared cores: two TTs rolled 100 steps from 32 starts
def test_quick_measure_end_to_end_on_tiny_recipes(monkeypatch):
    """The four recipes trained for a few steps (the TTs through the train-until rule, on few validation starts),
    then measure(quick=True): shapes, keys, flags and what the checkpoints record; not error levels."""
    import torch

    from analysis.research.seed_runs import train_recipe
    from models import recipes

    short = {k: {**v, "until": {**v["until"], "episodes": 2, "n_starts": 16}} if v.get("until") else v
             for k, v in recipes.FINDING_AGENTS.items()}
    monkeypatch.setattr(recipes, "FINDING_AGENTS", short)
    from trajectories import load_dataset
    from trajectories.samples import SAMPLE_DIR

    torch.set_num_threads(1)
    data = {"pendulum": load_dataset(SAMPLE_DIR / "pendulum.npz")}
    agents = {}

    def load(name):
        if name not in agents:
            agents[name] = train_recipe(name, 0, progress=False, ds=data["pendulum"], steps_scale=0.0005)
        return agents[name]

    f = cp.measure(load, data.__getitem__, seed=0, quick=True)
    e = f.raw["pendulum"]
    assert e.shape == (32, 4, 100) and np.isfinite(e).all() and (e >= 0).all()
    assert f.numbers["fully_observed"] is True and f.numbers["horizons"] == list(range(1, 101))
    assert f.flags == {"held_out": True, "paired": True, "fully_observed": True}
    row = f.numbers["pendulum"]
    assert row["held_out"] and row["start_context"] == 11 and row["n_starts"] == 32
    assert row["contexts"] == {"tt": 11, "tt_no_history": 1, "one_step_history": 11, "one_step": 0}
    assert set(row["training"]) == {"tt", "tt_no_history"}
    for m in ("tt", "tt_no_history"):
        agent = agents[cp.TASKS["pendulum"][m]]
        until = agent.config.training["until"]
        assert until["reference"] == "pendulum-dynamics" and until["cap"] == 3 and until["chunk"] == 1
        assert until["checks"][0]["step"] == 1 and until["checks"][-1]["step"] == agent.config.training["steps"]
        assert until["reached"] == (until["one_step_error"] <= until["reference_one_step_error"])
        assert until["validation"]["seed"] == 2_000_000 and until["validation"]["context"] == agent.context_length - 1
        assert until["validation"]["n_starts"] == 16 and until["validation"]["episodes"] == 2
    assert set(cp.METRICS) >= {"pendulum_tt_minus_one_step_h100", "pendulum_tt_minus_one_step_h10"}
    assert all(np.isfinite(fn(f.raw)) for k, fn in cp.METRICS.items() if "growth" not in k)
    assert "compounding_paper_pendulum" in f.figures


def test_memory_finding_measures_the_shipped_masked_agents_on_held_out_episodes():
    from models import load_agent
    from models.shipped import AGENT_DIR
    from trajectories import load_dataset
    from trajectories.samples import SAMPLE_DIR

    f = mp.measure(lambda n: load_agent(AGENT_DIR / n).eval(), lambda n: load_dataset(SAMPLE_DIR / f"{n}.npz"), 0,
                   quick=True)
    assert f.id == "memory_pendulum" and f.raw["masked"].shape == (64, 3) and f.raw["horizon"] == 10
    assert f.flags == {"held_out": True, "paired": True, "fully_observed": False}
    assert f.numbers["fully_observed"] is False and f.numbers["tt_context"] == f.raw["tt_context"] > 0
    assert f.numbers["history_minus_no_history"] == round(mp.METRICS["history_minus_no_history"](f.raw), 4)
