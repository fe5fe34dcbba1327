"""The Memory behaviour policy (envs/memory_expert.py): episodes reach the end they chose, the cue is in view at the
first step only (the memory the shipped MiniGrid agent must carry), and a seed gives the same episodes."""
import numpy as np
import pytest

pytest.importorskip("minigrid")

from envs.memory_expert import memory_episodes  # noqa: E402


def _returns(d):
    return np.add.reduceat(d["rewards"], d["episode_starts"])


def test_noiseless_episodes_take_the_shortest_path_to_the_chosen_end():
    d = memory_episodes(12, seed=3, eps=0.0)
    lens = np.diff(np.r_[d["episode_starts"], len(d["actions"])])
    # (1,3) facing right: 4 forwards to the split at (5,3), a turn, a forward onto the cell beside the end object
    assert (lens == 6).all()
    assert (d["actions"].reshape(12, 6)[:, :4] == 2).all() and set(d["actions"].reshape(12, 6)[:, 4]) <= {0, 1}
    assert ((_returns(d) > 0.5) == d["matched"]).all()   # matched end: 1 - 0.9 * 6 / 40; the other: 0
    assert np.allclose(_returns(d)[d["matched"]], 1 - 0.9 * 6 / 40)


def test_the_cue_is_in_view_at_the_first_step_only():
    from minigrid.core.constants import OBJECT_TO_IDX

    d = memory_episodes(8, seed=1, eps=0.0)
    assert d["image"].shape[1:] == (7, 7, 20)   # one-hot: the object bits come first
    for e, s in enumerate(d["episode_starts"]):
        cue = OBJECT_TO_IDX[str(d["cue"][e])]
        seen = [int(d["image"][s + t][..., cue].sum()) for t in range(6)]
        # the cue and its twin at one end; down the hallway the twin only; after the turn at the split, the twin or
        # nothing (it may be behind the agent)
        assert seen[0] == 2 and seen[1:4] == [1, 1, 1] and all(n <= 1 for n in seen[4:])


def test_a_seed_gives_the_same_episodes():
    a, b = memory_episodes(5, seed=7), memory_episodes(5, seed=7)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_one_hot_views_are_the_coded_views_one_hot():
    from envs.minigrid_dti import one_hot

    coded, hot = memory_episodes(4, seed=2, one_hot_obs=False), memory_episodes(4, seed=2)
    assert coded["image"].shape[1:] == (7, 7, 3) and hot["image"].dtype == np.uint8
    assert np.array_equal(one_hot(coded["image"]), hot["image"])
    assert all(np.array_equal(coded[k], hot[k]) for k in coded if k != "image")
