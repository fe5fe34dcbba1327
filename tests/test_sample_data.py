"""The shipped datasets: small, regenerable byte for byte by seed, and spread from low to high returns."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from envs.behaviour import SAMPLE_DATASETS, SHAPED_SAMPLES, collect
from trajectories import load_dataset
from trajectories.samples import SAMPLE_DIR, sample_datasets

ROOT = Path(__file__).resolve().parent.parent


def test_every_environment_has_a_small_dataset():
    shipped = sample_datasets()
    assert set(shipped) == set(SAMPLE_DATASETS) | set(SHAPED_SAMPLES) == {"cartpole", "pendulum", "masked-cartpole",
                                                                         "masked-pendulum", "keydoor", "reacher", "memory",
                                                                         "breakout"}
    for path in shipped.values():
        assert path.stat().st_size < 2_000_000, path
    # the project's rule is 50 MB for all shipped data and agents; 30 MB here keeps room for issue 25's checkpoint
    # histories (25.2 MB after issue 24's four value agents: 0.6 MB; breakout-dt's untrained state head is 4.6 MB)
    assert sum(p.stat().st_size for p in (ROOT / "sample_data").rglob("*") if p.is_file()) < 30_000_000


@pytest.mark.parametrize("alias", list(SAMPLE_DATASETS))
def test_regenerates_exactly_from_its_seed(alias):
    env_id, episodes, seed = SAMPLE_DATASETS[alias]
    shipped = load_dataset(SAMPLE_DIR / f"{alias}.npz")
    assert collect(env_id, episodes, seed=seed, progress=False).equals(shipped)
    assert shipped.env_id == env_id


@pytest.mark.parametrize("alias", ["cartpole", "pendulum", "masked-cartpole", "masked-pendulum", "reacher"])
def test_returns_spread_over_the_whole_range(alias):
    # return conditioning is only learnable when every range of returns has many episodes
    returns = load_dataset(SAMPLE_DIR / f"{alias}.npz").episode_returns
    counts, _ = np.histogram(returns, bins=5)
    assert (counts >= 0.08 * len(returns)).all(), counts


def test_key_to_door_successes_are_a_minority_but_plentiful():
    ds = load_dataset(SAMPLE_DIR / "keydoor.npz")
    success = ds.episode_returns.mean()
    assert 0.15 < success < 0.40
    assert set(np.unique(ds.episode_returns)) == {0.0, 1.0}


def test_reacher_is_a_mujoco_dataset_with_named_features():
    """Issue 13, item 7: the shipped MuJoCo example (Reacher-v5, 50-step episodes, 2 joint torques)."""
    ds = load_dataset(SAMPLE_DIR / "reacher.npz")
    assert ds.env_id == "Reacher-v5" and ds.obs_dim == 10 and ds.act_dim == 2 and not ds.discrete
    assert (ds.episode_lengths == 50).all() and ds.truncated.sum() == ds.n_episodes and not ds.terminated.any()
    assert ds.obs_names[-2:] == ["fingertip_minus_target_x", "fingertip_minus_target_y"]
    assert ds.act_names == ["shoulder_torque", "elbow_torque"]
    assert np.abs(ds.actions).max() <= 1.0
    # the knob is recorded per episode, and return falls with it (the fingertip holds further from the target)
    short = np.asarray(ds.metadata["stop_short"])
    assert len(short) == ds.n_episodes and 0.1 < (short == 0).mean() < 0.3
    near, far = ds.episode_returns[short < 0.1], ds.episode_returns[short > 0.3]
    assert near.mean() > far.mean() + 6
    # the final distance to the target follows the knob where the aim is within reach
    final = np.linalg.norm(ds.observations[ds.episode_starts + ds.episode_lengths - 1, -2:], axis=1)
    reach = short < 0.15
    assert np.abs(final[reach] - short[reach]).mean() < 0.03


def test_make_data_cli(tmp_path):
    out = tmp_path / "k.parquet"
    res = subprocess.run([sys.executable, "cli.py", "make-data", "--env", "keydoor", "--episodes", "30", "--out", str(out),
                          "--seed", "5", "--json"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["n_episodes"] == 30 and info["env_id"] == "seqlens/KeyToDoor-v0"
    assert load_dataset(out).equals(collect("keydoor", 30, seed=5, progress=False))
