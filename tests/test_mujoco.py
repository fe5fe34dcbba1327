"""MuJoCo (issue 13, item 1): gymnasium[mujoco] is installed, D4RL / Minari names map to gymnasium's ids, and a
D4RL-shaped file plus a Decision Transformer of the public hopper size run in Hopper-v5."""
import h5py
import numpy as np
import pytest

import envs
from models.base import AgentConfig
from models.decision_transformer import DecisionTransformer
from models.rollout import run_episodes
from trajectories import load_dataset


@pytest.mark.parametrize("name,env_id", [
    ("hopper-medium-v2", "Hopper-v5"), ("halfcheetah-medium-replay-v2", "HalfCheetah-v5"),
    ("walker2d-expert-v2", "Walker2d-v5"), ("hopper-medium-expert-v2", "Hopper-v5"), ("ant-random-v2", "Ant-v5"),
    ("mujoco/hopper/expert-v0", "Hopper-v5"), ("mujoco/walker2d/simple-v0", "Walker2d-v5"),
    ("cartpole", None), ("hopper", None), ("pen-human-v1", None), ("hopper-medium-v2:evil", None)])
def test_d4rl_and_minari_names_map_to_gymnasium_ids(name, env_id):
    assert envs.dataset_env_id(name) == env_id


def test_the_mapped_environments_have_d4rls_spaces():
    spaces = {"Hopper-v5": (11, 3), "HalfCheetah-v5": (17, 6), "Walker2d-v5": (17, 6)}
    for env_id, (obs, act) in spaces.items():
        o, a = envs.env_spaces(env_id)
        assert o.shape == (obs,) and a.shape == (act,), env_id
    assert envs.resolve_env_id("hopper-medium-v2") == "Hopper-v5"


def _hopper_file(path, n_episodes=3, length=40):
    rng = np.random.default_rng(0)
    n = n_episodes * length
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(n, 11)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, size=(n, 3)).astype(np.float32)
        f["rewards"] = rng.uniform(0, 3, size=n).astype(np.float32)
        f["terminals"] = np.zeros(n, bool)
        timeouts = np.zeros(n, bool)
        timeouts[length - 1::length] = True
        f["timeouts"] = timeouts


def test_a_d4rl_file_names_its_task_and_a_hopper_dt_acts_in_it(tmp_path):
    _hopper_file(tmp_path / "hopper-medium-v2.hdf5")
    ds = load_dataset(tmp_path / "hopper-medium-v2.hdf5")
    assert ds.env_id == "Hopper-v5" and ds.n_episodes == 3 and ds.obs_dim == 11 and ds.act_dim == 3
    _hopper_file(tmp_path / "mine.hdf5")
    assert load_dataset(tmp_path / "mine.hdf5").env_id is None      # no name, no attribute: no guess
    # the public hopper DT's sizes (hidden 128, 3 layers, 1 head), untrained: the loop runs, returns are finite
    dt = DecisionTransformer(AgentConfig(kind="dt", obs_dim=11, act_dim=3, discrete=False, context_length=20,
                                         max_ep_len=1000, rtg_scale=1000.0, env_id=ds.env_id,
                                         hparams={"hidden": 128, "n_layer": 3, "n_head": 1})).eval()
    ep = run_episodes(dt, 2, np.array([3600.0, 1800.0]), seed=0, limit=50)
    assert ep.lengths.min() >= 1 and ep.lengths.max() <= 50 and np.isfinite(ep.returns).all()
