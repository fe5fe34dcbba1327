"""The Dataset type: known answers on hand-made episodes, zero-copy views, and its own validation."""
import numpy as np
import pytest

from trajectories import Dataset, DatasetError, starts_from_flags, starts_from_ids


def test_counts_and_returns(tiny_discrete):
    ds = tiny_discrete
    assert (ds.n_episodes, ds.n_transitions, ds.obs_dim, ds.act_dim, ds.n_actions) == (3, 9, 2, 1, 2)
    assert ds.discrete
    np.testing.assert_array_equal(ds.episode_lengths, [3, 4, 2])
    np.testing.assert_array_equal(ds.episode_returns, [6, 4, -1])
    np.testing.assert_array_equal(ds.returns_to_go, [6, 5, 3, 4, 3, 2, 1, -1, 1])
    np.testing.assert_array_equal(ds.timesteps, [0, 1, 2, 0, 1, 2, 3, 0, 1])
    np.testing.assert_array_equal(ds.episode_index, [0, 0, 0, 1, 1, 1, 1, 2, 2])
    s = ds.summary()
    assert (s["return_min"], s["return_mean"], s["return_max"]) == (-1.0, 3.0, 6.0)


def test_returns_to_go_computed_once(tiny_discrete):
    assert tiny_discrete.returns_to_go is tiny_discrete.returns_to_go


def test_episode_views_share_memory(tiny_discrete):
    ep = tiny_discrete.episode(1)
    assert len(ep) == 4 and ep.total_return == 4
    for view, parent in ((ep.observations, tiny_discrete.observations), (ep.actions, tiny_discrete.actions),
                         (ep.rewards, tiny_discrete.rewards), (ep.returns_to_go, tiny_discrete.returns_to_go)):
        assert np.shares_memory(view, parent)
    np.testing.assert_array_equal(ep.observations, tiny_discrete.observations[3:7])
    assert tiny_discrete.episode(-1).index == 2
    with pytest.raises(IndexError):
        tiny_discrete.episode(3)
    assert [len(e) for e in tiny_discrete] == [3, 4, 2]


def test_select_and_fingerprint(tiny_discrete):
    sub = tiny_discrete.select([2, 0])
    np.testing.assert_array_equal(sub.episode_returns, [-1, 6])
    np.testing.assert_array_equal(sub.episode_starts, [0, 2])
    assert sub.fingerprint() != tiny_discrete.fingerprint()
    assert tiny_discrete.select([0, 1, 2]).fingerprint() == tiny_discrete.fingerprint()


def test_rtg_long_float_sums_are_exact_per_episode():
    # float64 accumulation: a long dataset does not leak rounding error across episodes
    n = 200_000
    rewards = np.ones(n, np.float32)
    starts = np.arange(0, n, 500)
    ds = Dataset(np.zeros((n, 1), np.float32), np.zeros(n, int), rewards, np.zeros(n, bool), np.zeros(n, bool), starts)
    np.testing.assert_array_equal(ds.returns_to_go[-500:], np.arange(500, 0, -1))
    np.testing.assert_array_equal(ds.episode_returns, np.full(len(starts), 500))


def test_continuous_actions(tiny_continuous):
    ds = tiny_continuous
    assert not ds.discrete and ds.act_dim == 2 and ds.n_actions is None
    assert ds.act_names == ["action_0", "action_1"]
    np.testing.assert_allclose(ds.returns_to_go[0], ds.rewards[:5].sum(), rtol=1e-6)


def test_flags_helpers():
    np.testing.assert_array_equal(starts_from_flags(np.array([0, 1, 0, 0]), np.array([0, 0, 0, 1])), [0, 2])
    np.testing.assert_array_equal(starts_from_ids(np.array([5, 5, 2, 2, 2, 9])), [0, 2, 5])


@pytest.mark.parametrize("kwargs, message", [
    (dict(rewards=np.zeros(4)), "rewards has 4 rows but observations has 5"),
    (dict(episode_starts=[0, 2, 2]), "episode 1 has zero length"),
    (dict(episode_starts=[1]), "must begin with 0"),
    (dict(episode_starts=[0, 7]), "zero length"),
    (dict(observations=np.array([[0.0], [np.nan], [0], [0], [0]])), "observations has NaN at row 1"),
    (dict(rewards=np.array([0, 0, 0, np.inf, 0])), "rewards has inf at row 3"),
    (dict(terminated=np.array([0, 0, 2, 0, 0])), "terminated must be 0/1"),
    (dict(actions=np.array([0, -1, 0, 0, 0])), "negative"),
    (dict(observations=np.zeros((5, 2, 2, 2, 2))), "2-D array"),
    (dict(observations=np.zeros((0, 2)), actions=np.zeros(0, int), rewards=np.zeros(0),
          terminated=np.zeros(0), truncated=np.zeros(0)), "no steps"),
])
def test_validation_messages(kwargs, message):
    base = dict(observations=np.zeros((5, 1)), actions=np.zeros(5, int), rewards=np.zeros(5),
                terminated=np.zeros(5, bool), truncated=np.zeros(5, bool), episode_starts=[0, 3])
    base.update(kwargs)
    with pytest.raises(DatasetError, match=message) as err:
        Dataset(**base, source="run.npz")
    assert str(err.value).startswith("run.npz")
