"""Credit and patching on a value agent's outputs (issue 24, item 3), on hand-made agents with closed-form answers
(tests/hand_value_agents.py): IG of Q(s, a_logged) on a Markov agent goes to the current observation's features,
(s − baseline) times the weight; on a recurrent (drqn) agent to every past step's observation, decaying as the
recurrence does; the previous actions, worth nothing to it, get nothing."""
import numpy as np
import pytest

from hand_value_agents import HandCQ, hand_dataset, hand_dt, hand_drqn, hand_q
from analysis.core.inputs import training_data
from analysis.interp.attribution import attribute_step, dataset_baseline, targets_of
from analysis.publish import catalog
from models.errors import AgentError


def _setup(agent, episode, step):
    ds = hand_dataset(length=8)
    base = dataset_baseline(agent, training_data(agent, ds)).states
    row = int(ds.episode_starts[episode]) + step
    return ds, base, row


def test_targets_by_capability():
    assert targets_of(hand_q()) == ["q", "v"] == targets_of(hand_drqn())
    assert targets_of(hand_dt()) == ["action", "return", "value"]


@pytest.mark.parametrize("method", ["ig", "saliency"])
def test_markov_q_credit_is_the_weight_times_the_input(method):
    ds, base, row = _setup(hand_q(), 1, 5)
    res = attribute_step(hand_q(), ds, 1, 5, target="q", method=method)
    a, s = int(ds.actions[row]), ds.observations[row].astype(np.float64)
    w = np.array([[1, 0], [0, 1], [1, 1]], float)[a]          # Q_a = w . relu(s) + b, s > 0: linear
    want = w * (s - base) if method == "ig" else np.abs(w)
    assert res.window_steps.tolist() == [5] and res.target_label.startswith("Q of the logged action")
    assert np.allclose(res.trained.features["state"][0], want, atol=1e-5)
    assert res.trained.output == pytest.approx([s[0], s[1] + 0.5, s[0] + s[1] - 1][a], abs=1e-5)


def test_recurrent_q_credit_reaches_every_past_step_and_decays():
    ds, base, row = _setup(hand_drqn(), 2, 6)
    res = attribute_step(hand_drqn(), ds, 2, 6, target="q", method="ig")
    a = int(ds.actions[row])
    u = np.array([[1, 0], [0, 1], [1, -1]], float)[a]         # Q_a(t) = u . sum_k 0.5^(t-k) s_k + c
    obs = ds.observations[row - 6:row + 1].astype(np.float64)
    want = (0.5 ** np.arange(6, -1, -1))[:, None] * u[None] * (obs - base[None])
    assert res.window_steps.tolist() == list(range(7))
    assert np.allclose(res.trained.features["state"], want, atol=1e-5)
    assert np.allclose(res.trained.features["action"], 0)     # the previous actions are read with weight 0
    assert abs(res.trained.delta) < 1e-4


def test_v_target_and_refusals():
    ds, _, row = _setup(hand_drqn(), 0, 3)
    res = attribute_step(hand_drqn(), ds, 0, 3, target="v", method="saliency")
    h = sum(0.5 ** (3 - k) * ds.observations[k].astype(np.float64) for k in range(4))
    q = np.array([h[0], h[1] + 0.25, h[0] - h[1]])
    best = np.array([[1, 0], [0, 1], [1, -1]], float)[q.argmax()]   # V = max_a Q: the gradient of the best action
    assert np.allclose(res.trained.features["state"], np.abs(best)[None] * 0.5 ** np.arange(3, -1, -1)[:, None])
    with pytest.raises(ValueError, match="a value-based agent's outputs are Q of the logged action"):
        attribute_step(hand_q(), ds, 0, 3, target="action")
    with pytest.raises(ValueError, match="target 'q' needs a value-based agent"):
        attribute_step(hand_dt(), ds, 0, 3, target="q")
    with pytest.raises(ValueError, match="continuous one reads the action as an input"):
        attribute_step(HandCQ(), ds, 0, 3, target="q")


def test_credit_figures_through_the_catalog():
    ds = hand_dataset(length=8)
    f = catalog.make("attribution_timesteps", hand_drqn(), ds, episode=1, step=4, target="q", method="ig")
    assert "Q of the logged action" in f.figure.layout.title.text
    assert f.data["step"].tolist() == [0, 1, 2, 3, 4]


# ---- patching on Q ---------------------------------------------------------------------------------------------------
def test_markov_unit_patching_by_hand():
    """Q_a = w_a . relu(s) + b_a: patching unit j restores w_a[j] (s_clean_j − s_corr_j) of the difference."""
    from analysis.interp.value_patching import patch_units

    ds = hand_dataset(length=8)
    res = patch_units(hand_q(), ds, episode=0, step=3, corrupt_episode=2)
    clean, corr = ds.observations[3].astype(np.float64), ds.observations[16 + 3].astype(np.float64)
    a = int(ds.actions[3])
    w = np.array([[1, 0], [0, 1], [1, 1]], float)[a]
    gap = w @ (clean - corr)
    assert res.layers == ["hidden.0"] and res.clean - res.corrupted == pytest.approx(gap, abs=1e-5)
    assert np.allclose(res.effects[0], w * (clean - corr) / gap, atol=1e-4) and res.whole[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same Q of the logged action"):
        patch_units(hand_q(), ds, episode=0, step=3, corrupt_episode=0)
    with pytest.raises(AgentError, match="needs a Markov value agent"):
        patch_units(hand_drqn(), ds, 0, 3, 1)


def test_recurrent_state_patch_decays_as_the_recurrence():
    """h_t = 0.5 h_{t-1} + s_t: the donor's state after step t changes the receiver's Q_a(t') by
    u_a . 0.5^(t'-t) (h_donor_t − h_receiver_t)."""
    from analysis.interp.value_patching import patch_memory

    ds = hand_dataset(length=8)
    res = patch_memory(hand_drqn(), ds, episode=0, step=2, corrupt_episode=1, output="q")

    def h(start, t):
        return sum(0.5 ** (t - k) * ds.observations[start + k].astype(np.float64) for k in range(t + 1))

    dh = h(0, 2) - h(8, 2)
    u = np.array([[1, 0], [0, 1], [1, -1]], float)
    want = np.array([u[ds.actions[8 + t]] @ dh * 0.5 ** (t - 2) for t in range(2, 8)])
    assert res.steps.tolist() == list(range(2, 8)) and np.allclose(res.change, want, atol=1e-5)
    assert res.patched[0] == pytest.approx(res.donor)
    v = patch_memory(hand_drqn(), ds, 0, 2, 1, output="v")
    assert len(v.change) == 6 and v.label == "V(s)"
    with pytest.raises(ValueError, match="same episode"):
        patch_memory(hand_drqn(), ds, 1, 2, 1)
    with pytest.raises(ValueError, match="step must lie in 0..7"):
        patch_memory(hand_drqn(), ds, 0, 8, 1)
    with pytest.raises(AgentError, match="no Q-values"):
        patch_memory(hand_dt(), ds, 0, 2, 1)


def test_patching_figures_through_the_catalog():
    ds = hand_dataset(length=8)
    f = catalog.make("q_patching_memory", hand_drqn(), ds, episode=0, step=2, corrupt_episode=1)
    assert f.data["step"].tolist() == list(range(2, 8)) and "state after step 2" in f.figure.data[1].name
    g = catalog.make("q_patching_units", hand_q(), ds, episode=0, step=3, corrupt_episode=2)
    assert list(g.figure.data[0].x) == ["hidden.0 · unit 0", "hidden.0 · unit 1", "hidden.0 · all"]


def test_memory_figure_zooms_to_where_the_patch_shows():
    ds = hand_dataset(n_episodes=2, length=60)
    f = catalog.make("q_patching_memory", hand_drqn(), ds, episode=0, step=5, corrupt_episode=1)
    lo, hi = f.figure.layout.xaxis.range
    assert lo == 4.5 and 25 <= hi < 59 and f"steps 5–{int(hi - 0.5)} of 59 shown" in f.figure.layout.title.text
    assert f.data["step"].tolist() == list(range(5, 60))   # the data keeps every step
