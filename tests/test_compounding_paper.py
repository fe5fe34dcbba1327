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
