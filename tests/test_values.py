"""The value views (issue 24, item 1): a value agent's Q(s, ·), V(s), Q of the logged action, the advantage, greedy vs
logged and the discounted return-to-go truth, and a DT's value head and return prediction on the same steps, on
hand-made agents with known values (tests/hand_value_agents.py implements the value-agent contract exactly); their
figures and catalog entries; bad input as one sentence."""
import numpy as np
import pytest

from hand_value_agents import HandCQ, hand_dataset, hand_dt, hand_drqn, hand_q
from analysis.interp.values import (discounted_return_to_go, dt_value_trace, value_trace)
from analysis.publish import catalog
from models.errors import AgentError
from trajectories import Dataset


def _q_markov(obs):
    s = np.maximum(obs.astype(np.float64), 0)
    return np.stack([s[:, 0], s[:, 1] + 0.5, s[:, 0] + s[:, 1] - 1.0], 1)


def _q_recurrent(obs, decay=0.5):
    h, out = np.zeros(2), []
    for s in obs.astype(np.float64):
        h = decay * h + s
        out.append([h[0], h[1] + 0.25, h[0] - h[1]])
    return np.asarray(out)


def test_discounted_return_to_go_by_hand():
    assert np.allclose(discounted_return_to_go([1, 0, 1], 0.9), [1 + 0.81, 0.9, 1])
    assert np.allclose(discounted_return_to_go([2, 3], 1.0), [5, 3])


@pytest.mark.parametrize("make, reference", [(hand_q, _q_markov), (hand_drqn, _q_recurrent)])
def test_value_trace_has_the_agents_known_values(make, reference):
    ds = hand_dataset()
    tr = value_trace(make(), ds, 1)
    s, e = int(ds.episode_starts[1]), int(ds.episode_ends[1])
    q = reference(ds.observations[s:e])
    logged = ds.actions[s:e]
    assert np.allclose(tr.q, q, atol=1e-6) and np.allclose(tr.v, q.max(1), atol=1e-6)
    assert np.allclose(tr.q_taken, q[np.arange(e - s), logged], atol=1e-6)
    assert np.allclose(tr.advantage, q[np.arange(e - s), logged] - q.max(1), atol=1e-6) and (tr.advantage <= 1e-6).all()
    assert np.array_equal(tr.greedy, q.argmax(1)) and np.array_equal(tr.logged, logged)
    assert np.array_equal(tr.agrees, q.argmax(1) == logged) and np.allclose(tr.advantage[tr.agrees], 0, atol=1e-6)
    assert tr.discount == 0.9 and np.allclose(tr.truth, discounted_return_to_go(ds.rewards[s:e], 0.9))
    frame = tr.to_frame()
    assert list(frame["step"]) == list(range(e - s)) and np.allclose(frame["q[right]"], q[:, 2], atol=1e-6)


def test_continuous_value_agent_greedy_vs_logged_in_unit_actions():
    ds = hand_dataset()
    acts = np.clip(ds.observations[:, 1:2] - 1.0, -1, 1).astype(np.float32)   # logged a = clip(s1 - 1)
    acts[::2] = np.clip(ds.observations[::2, 1:2], -1, 1)                      # every other step: the greedy one
    cont = Dataset(ds.observations, acts, ds.rewards, ds.terminated, ds.truncated, ds.episode_starts, source="c.npz")
    tr = value_trace(HandCQ(), cont, 0)
    s = ds.observations[:6].astype(np.float64)
    assert tr.q is None and np.allclose(tr.v, s[:, 0])
    assert np.allclose(tr.q_taken, s[:, 0] - (acts[:6, 0] - s[:, 1]) ** 2, atol=1e-6)
    want = np.abs(np.clip(s[:, 1], -1, 1) - acts[:6, 0]) <= 0.1
    assert np.array_equal(tr.agrees, want) and want[::2].all() and np.allclose(tr.truth, cont.returns_to_go[:6])
    with pytest.raises(AgentError, match="continuous dimensions"):
        catalog.make("q_values", HandCQ(), cont, episode=0)
    f = catalog.make("advantage", HandCQ(), cont, episode=0)
    assert len(f.data) == 6 and "every dimension within 0.1 of the agent's action" in f.figure.layout.title.text


def test_dt_value_head_and_return_prediction_in_raw_units_with_the_return_hidden():
    ds = hand_dataset()
    tr = dt_value_trace(hand_dt(value=0.3, next_return=0.2, rtg_scale=10.0), ds, 2)
    assert np.allclose(tr.v, 3.0) and np.allclose(tr.return_pred, 2.0) and not tr.has_q
    assert tr.discount == 1.0 and np.allclose(tr.truth, ds.returns_to_go[12:18])
    # the value head reads the history with every return-to-go hidden: rewards (which reach the DT only through the
    # return-to-go) cannot move it; the return prediction reads them
    dt = hand_dt()
    with __import__("torch").no_grad():
        for name in ("value", "return"):
            dt.output_head(name).weight.normal_(0, 1.0)
    more = Dataset(ds.observations, ds.actions, ds.rewards * 3 + 1, ds.terminated, ds.truncated, ds.episode_starts,
                   n_actions=3, source="more.npz")
    a, b = dt_value_trace(dt, ds, 2), dt_value_trace(dt, more, 2)
    assert np.allclose(a.v, b.v, atol=1e-5) and not np.allclose(a.return_pred, b.return_pred, atol=1e-3)


def test_bad_input_is_one_sentence():
    ds = hand_dataset()
    for bad in (3, -1, 1.5, "0"):
        with pytest.raises(ValueError) as e:
            value_trace(hand_q(), ds, bad)
        assert "episode must be a whole number from 0 to 2" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(AgentError, match="Q.s, a. and the advantage need a value-based agent; a dt agent has no Q-values"):
        value_trace(hand_dt(), ds, 0)
    wide = Dataset(np.zeros((3, 4), np.float32), np.zeros(3, np.int64), np.zeros(3, np.float32), np.array([0, 0, 1], bool),
                   np.zeros(3, bool), np.array([0]), source="w.npz")
    with pytest.raises(AgentError, match="4 observation features"):
        value_trace(hand_q(), wide, 0)


def test_contract_shapes_are_checked():
    class Short(type(hand_q())):
        def episode_values(self, obs, actions):
            out = super().episode_values(obs, actions)
            return {**out, "v": out["v"][:-1]}

    a = hand_q()
    short = Short.__new__(Short)
    short.__dict__.update(a.__dict__)
    with pytest.raises(ValueError, match=r"gave v of shape \(5,\); expected \(6,\)"):
        value_trace(short, hand_dataset(), 0)


# ---- figures and catalog entries ---------------------------------------------------------------------------------
def test_q_values_figure_draws_q_and_marks_logged_and_greedy():
    ds = hand_dataset()
    f = catalog.make("q_values", hand_q(), ds, episode=1)
    tr = value_trace(hand_q(), ds, 1)
    heat, logged, greedy = f.figure.data
    assert np.allclose(np.asarray(heat.z), tr.q.T) and list(heat.y) == ["left", "stay", "right"]
    names = np.array(["left", "stay", "right"])
    assert list(logged.y) == list(names[tr.logged]) and list(greedy.y) == list(names[tr.greedy])
    assert f"the same at {np.mean(tr.agrees):.0%} of 6 steps" in f.figure.layout.title.text
    assert "γ = 0.9" in f.figure.layout.title.text and f.params == {"episode": 1}
    assert list(f.data.columns) == ["episode", "step", "logged_action", "q[left]", "q[stay]", "q[right]"]


def test_value_trace_figure_for_a_value_agent_and_for_a_dt():
    ds = hand_dataset()
    f = catalog.make("value_trace", hand_drqn(), ds, episode=0)
    tr = value_trace(hand_drqn(), ds, 0)
    by = {t.name: np.asarray(t.y) for t in f.figure.data}
    assert set(by) == {"V(s)", "Q(s, logged action)", "discounted return-to-go (γ = 0.9)"}
    assert np.allclose(by["V(s)"], tr.v) and np.allclose(by["Q(s, logged action)"], tr.q_taken)
    assert f.figure.layout.yaxis.title.text == "return (raw units)"
    g = catalog.make("value_trace", hand_dt(), ds, episode=0)
    by = {t.name: np.asarray(t.y) for t in g.figure.data}
    assert np.allclose(by["value head (return-to-go hidden)"], 3.0) and np.allclose(by["predicted R(t+1)"], 2.0)
    assert np.allclose(by["return-to-go (logged rewards)"], ds.returns_to_go[:6])
    with pytest.raises(AgentError, match="value-based agent"):
        catalog.make("advantage", hand_dt(), ds, episode=0)
    from models.base import AgentConfig
    from models.baselines import MLPPolicy

    mlp = MLPPolicy(AgentConfig(kind="mlp", obs_dim=2, act_dim=1, discrete=True, n_actions=3))
    with pytest.raises(AgentError, match="value-based agent .Q and V. or a Decision Transformer .value head.; a mlp"):
        catalog.make("value_trace", mlp, ds, episode=0)


def test_advantage_bars_split_greedy_and_not():
    ds = hand_dataset()
    f = catalog.make("advantage", hand_q(), ds, episode=1)
    tr = value_trace(hand_q(), ds, 1)
    agree, disagree, tips = f.figure.data
    assert np.array_equal(np.asarray(agree.x), tr.steps[tr.agrees]) and np.allclose(np.asarray(agree.y), 0, atol=1e-6)
    assert np.allclose(np.asarray(disagree.y), tr.advantage[~tr.agrees]) and (np.asarray(disagree.y) < 0).all()
    assert f.figure.data[1].marker.color != f.figure.data[0].marker.color


def test_episode_out_of_range_is_refused_before_the_entry_runs():
    with pytest.raises(ValueError, match="episode 9 is out of range: hand.npz has 3 episodes"):
        catalog.make("value_trace", hand_q(), hand_dataset(), episode=9)


def test_compare_a_value_agent_beside_a_dt_on_one_axis():
    """Compare mode: the value agent's V(s) and Q beside the DT's value head and return prediction, same steps, one
    value axis (both raw return units); two value agents' Q maps get a B − A panel."""
    from analysis.publish.compare_mode import compare

    ds = hand_dataset(length=30)
    f = compare("value_trace", hand_q(), hand_dt(), ds, "q agent", "a DT", episode=1)
    names = [t.name for t in f.figure.data]
    assert "V(s)" in names and "value head (return-to-go hidden)" in names and "predicted R(t+1)" in names
    layout = f.figure.layout
    assert layout.yaxis2.matches == "y" or layout.yaxis.range == layout.yaxis2.range
    assert set(f.data["agent"]) == {"q agent", "a DT"}
    g = compare("q_values", hand_q(), hand_drqn(), ds, "q", "drqn", episode=1)
    diff = g.data[g.data["agent"] == "B − A"]
    a, b = value_trace(hand_q(), ds, 1), value_trace(hand_drqn(), ds, 1)
    assert np.allclose(diff["q[stay]"], b.q[:, 1] - a.q[:, 1], atol=1e-6)


def test_hostile_names_are_shown_as_text_in_every_value_figure():
    """A dataset named like markup, with action labels that are links, TeX and template placeholders: every value
    figure shows them escaped (tests/test_figure_text.py's check)."""
    import dataclasses

    from test_figure_text import check, evil

    ds = hand_dataset()
    ds = dataclasses.replace(ds, source=evil("file") + ".npz",
                             metadata={"action_labels": [evil("left"), evil("stay"), evil("right")]})
    for name, agent, params in (("q_values", hand_q(), {}), ("value_trace", hand_drqn(), {}),
                                ("advantage", hand_q(), {}), ("value_trace", hand_dt(), {}),
                                ("q_patching_units", hand_q(), {"step": 2, "corrupt_episode": 1}),
                                ("q_patching_memory", hand_drqn(), {"step": 2, "corrupt_episode": 1})):
        check(catalog.make(name, agent, ds, episode=0, **params).figure)


def test_long_episodes_mark_only_where_logged_and_greedy_differ():
    from analysis.publish.figures.values import LONG_EPISODE

    ds = hand_dataset(n_episodes=2, length=LONG_EPISODE + 10)
    tr = value_trace(hand_q(), ds, 1)
    f = catalog.make("q_values", hand_q(), ds, episode=1)
    _, logged, greedy = f.figure.data
    differ = tr.steps[~tr.agrees]
    assert 0 < len(differ) < LONG_EPISODE + 10
    assert np.array_equal(np.asarray(logged.x), differ) and np.array_equal(np.asarray(greedy.x), differ)
    assert "marked where they differ" in f.figure.layout.title.text
