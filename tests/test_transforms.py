"""trajectories/transforms.py: delayed rewards and the best episodes (%BC's data), on hand-made datasets."""
import numpy as np
import pytest

from trajectories.dataset import Dataset
from trajectories.transforms import best_episodes, delayed_rewards


def _ds(rewards_per_episode, env_id="CartPole-v1"):
    rewards = np.concatenate([np.asarray(r, np.float32) for r in rewards_per_episode])
    lengths = [len(r) for r in rewards_per_episode]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    n = len(rewards)
    term = np.zeros(n, bool)
    term[starts + np.array(lengths) - 1] = True
    return Dataset(np.arange(2 * n, dtype=np.float32).reshape(n, 2), np.arange(n) % 2, rewards, term, np.zeros(n, bool),
                   starts, env_id=env_id, metadata={"seed": 3})


def test_delayed_rewards_moves_each_episodes_sum_to_its_last_step():
    ds = _ds([[1, 2, 3], [0.5], [-1, 0, 4, 1]])
    d = delayed_rewards(ds)
    np.testing.assert_array_equal(d.rewards, [0, 0, 6, 0.5, 0, 0, 0, 4])
    np.testing.assert_array_equal(d.episode_returns, ds.episode_returns)
    np.testing.assert_array_equal(d.returns_to_go[d.episode_starts], ds.returns_to_go[ds.episode_starts])
    np.testing.assert_array_equal(d.returns_to_go, [6, 6, 6, 0.5, 4, 4, 4, 4])   # flat until paid
    np.testing.assert_array_equal(d.observations, ds.observations)
    np.testing.assert_array_equal(d.actions, ds.actions)
    assert d.env_id == "CartPole-v1" and d.metadata == {"seed": 3, "delayed_rewards": True}
    assert delayed_rewards(ds, env_id="seqlens/DelayedCartPole-v1").env_id == "seqlens/DelayedCartPole-v1"


def test_delayed_rewards_is_pure_and_idempotent():
    ds = _ds([[1, 1], [2, 0, 0]])
    before = ds.rewards.copy()
    d = delayed_rewards(ds)
    np.testing.assert_array_equal(ds.rewards, before)
    assert ds.metadata == {"seed": 3}
    np.testing.assert_array_equal(delayed_rewards(d).rewards, d.rewards)


def test_key_to_door_rewards_are_already_delayed():
    """Key-to-Door pays only on the step that ends the episode: its delayed data is the same data, which is why the
    delayed-reward finding runs on CartPole (dense rewards) instead."""
    from envs.behaviour import collect

    ds = collect("keydoor-random", 300, seed=0, progress=False)
    assert ds.episode_returns.sum() > 0
    np.testing.assert_array_equal(delayed_rewards(ds).rewards, ds.rewards)


def test_best_episodes_by_fraction_and_by_return():
    ds = _ds([[0], [1], [0, 0], [1, 1], [0.5]])   # returns 0, 1, 0, 2, 0.5
    np.testing.assert_array_equal(best_episodes(ds, fraction=0.2), [3])
    np.testing.assert_array_equal(best_episodes(ds, fraction=0.5), [1, 3, 4])   # ceil(2.5) = 3
    np.testing.assert_array_equal(best_episodes(ds, fraction=0.8), [0, 1, 3, 4])  # tie at 0: the earlier episode
    np.testing.assert_array_equal(best_episodes(ds, fraction=1.0), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(best_episodes(ds, min_return=1), [1, 3])
    sub = ds.select(best_episodes(ds, min_return=1))
    np.testing.assert_array_equal(sub.episode_returns, [1, 2])
    assert sub.n_transitions == 3


@pytest.mark.parametrize("kwargs, match", [({}, "exactly one"), ({"fraction": 0.1, "min_return": 1}, "exactly one"),
                                           ({"fraction": 0}, r"\(0, 1\]"), ({"fraction": 1.5}, r"\(0, 1\]"),
                                           ({"min_return": 5}, "no episode has a return of at least 5")])
def test_best_episodes_refuses_what_it_cannot_do(kwargs, match):
    with pytest.raises(ValueError, match=match):
        best_episodes(_ds([[0], [1]]), **kwargs)
