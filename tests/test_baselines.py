"""Baselines, checkpoints, training and evaluation: known answers on tiny hand-made data."""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from models import AgentError, load_agent, save_agent
from analysis.behaviour.evaluate import evaluate
from analysis.core.stats import bootstrap_ci
from models.checks import check_dataset, check_targets
from models.train import make_config, train
from models.windows import TrainingData, episode_windows, sample_windows
from trajectories import Dataset, load_dataset
from trajectories.samples import SAMPLE_DIR

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _parity_dataset(n_episodes=40, length=12) -> Dataset:
    """Discrete: the right action is 1 when obs_0 > 0 else 0 (a Markov rule an MLP must learn)."""
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n_episodes * length, 2)).astype(np.float32)
    actions = (obs[:, 0] > 0).astype(np.int64)
    return Dataset(obs, actions, np.ones(len(obs)), np.zeros(len(obs), bool), np.zeros(len(obs), bool),
                   np.arange(0, len(obs), length), env_id=None, source="parity")


def _echo_dataset(n_episodes=60, length=10) -> Dataset:
    """A POMDP in miniature: obs_0 shows a bit only at t = 0; the action must repeat it at every step."""
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2, n_episodes)
    obs = np.zeros((n_episodes * length, 1), np.float32)
    obs[::length, 0] = 2 * bits - 1
    actions = np.repeat(bits, length)
    return Dataset(obs, actions, np.ones(len(obs)), np.zeros(len(obs), bool), np.zeros(len(obs), bool),
                   np.arange(0, len(obs), length), source="echo")


def test_windows_draw_episodes_uniformly_not_by_length():
    # one 1000-step episode and 99 one-step episodes: drawn by length the short ones would be ~9% of windows
    lengths = [1000] + [1] * 99
    n = sum(lengths)
    ds = Dataset(np.zeros((n, 1)), np.zeros(n, int), np.ones(n), np.zeros(n, bool), np.zeros(n, bool),
                 np.concatenate([[0], np.cumsum(lengths)[:-1]]))
    data = TrainingData.build(ds, [0.0], [1.0], 1.0, 1000)
    w = sample_windows(data, 20000, 5, np.random.default_rng(0))
    short = (w["mask"].sum(1) == 1) & (w["timesteps"][:, -1] == 0)
    assert abs(short.mean() - 0.99) < 0.01


def test_episode_windows_are_left_padded():
    ds = _echo_dataset(2, 4)
    data = TrainingData.build(ds, [0.0], [1.0], 1.0, 10)
    w = episode_windows(data, 1, 3)
    np.testing.assert_array_equal(w["mask"], [[0, 0, 1], [0, 1, 1], [1, 1, 1], [1, 1, 1]])
    np.testing.assert_array_equal(w["timesteps"], [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3]])
    np.testing.assert_array_equal(w["rtg"][:, -1], [4, 3, 2, 1])


def test_mlp_learns_a_markov_rule():
    ds = _parity_dataset()
    agent = train("mlp", ds, steps=300, seed=0, progress=False, hparams={"dropout": 0.0})
    obs = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [1.0, 5.0], [-1.0, -5.0]])
    roll = agent.start_rollout(4, sample=False)
    np.testing.assert_array_equal(roll.act(obs.numpy()), [1, 0, 1, 0])


def test_gru_remembers_what_an_mlp_cannot():
    ds = _echo_dataset()
    gru = train("gru", ds, steps=150, seed=0, progress=False)
    mlp = train("mlp", ds, steps=150, seed=0, progress=False)
    for agent, expected in ((gru, 1.0), (mlp, 0.6)):
        roll = agent.start_rollout(2, sample=False)
        correct = []
        for t in range(10):
            obs = np.array([[1.0], [-1.0]], np.float32) if t == 0 else np.zeros((2, 1), np.float32)
            correct.append(roll.act(obs) == [1, 0])
        acc = np.mean(correct)
        assert acc >= expected if agent.kind == "gru" else acc <= expected, (agent.kind, acc)


def test_dynamics_model_learns_linear_dynamics():
    # s_{t+1} = s_t + 0.1 * a_t, r_t = -|s_t|: a perfect model exists
    rng = np.random.default_rng(0)
    E, T = 50, 20
    obs, acts, rews = [], [], []
    for _ in range(E):
        s = rng.uniform(-1, 1, size=1)
        for _ in range(T):
            a = rng.uniform(-1, 1, size=1)
            obs.append(s.copy()); acts.append(a); rews.append(-abs(s[0]))
            s = s + 0.1 * a
    ds = Dataset(np.array(obs, np.float32), np.array(acts, np.float32), np.array(rews, np.float32),
                 np.zeros(E * T, bool), np.zeros(E * T, bool), np.arange(0, E * T, T))
    model = train("dynamics", ds, steps=1500, seed=0, progress=False, hparams={"hidden": 64, "n_layer": 2})
    pred, rewards = model.rollout_open_loop(np.array([0.5], np.float32), np.full((5, 1), 1.0, np.float32))
    np.testing.assert_allclose(pred[:, 0], 0.5 + 0.1 * np.arange(1, 6), atol=0.03)
    assert rewards[0] == pytest.approx(-0.5, abs=0.05)
    from analysis.behaviour.evaluate import prediction_error

    err = prediction_error(model, ds, horizon=5, n_starts=20)
    assert err["horizon"] == [1, 2, 3, 4, 5] and max(err["mean_l2"]) < 0.05
    assert err["mean_l2"][0] <= err["mean_l2"][-1] + 1e-3  # errors do not shrink when fed back


@pytest.mark.parametrize("kind", ["mlp", "gru", "dynamics"])
def test_checkpoint_round_trip_and_zip(kind, tmp_path):
    agent = train(kind, _parity_dataset(), steps=5, seed=3, progress=False)
    save_agent(agent, tmp_path / "a")
    back = load_agent(tmp_path / "a")
    assert back.config == agent.config
    for (k, v), (k2, v2) in zip(agent.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        for p in (tmp_path / "a").iterdir():
            zf.write(p, f"agent/{p.name}")
    zipped = load_agent(tmp_path / "a.zip")
    assert zipped.config == agent.config


def test_training_is_deterministic_by_seed():
    ds = _parity_dataset()
    a = train("mlp", ds, steps=30, seed=7, progress=False)
    b = train("mlp", ds, steps=30, seed=7, progress=False)
    c = train("mlp", ds, steps=30, seed=8, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def _saved(tmp_path, kind="mlp"):
    agent = train(kind, _parity_dataset(), steps=2, progress=False)
    return save_agent(agent, tmp_path / "agent"), agent


def test_bad_checkpoints_get_one_sentence(tmp_path):
    d, agent = _saved(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"\x80\x04K\x01.")  # a real pickle: never opened
    cases = []
    with pytest.raises(AgentError, match="model.pt is a pickle-based checkpoint"):
        load_agent(tmp_path / "model.pt")
    state = load_file(d / "model.safetensors")
    # missing tensor
    missing = dict(state)
    missing.pop(next(iter(missing)))
    save_file(missing, d / "model.safetensors")
    with pytest.raises(AgentError, match="model.safetensors is missing"):
        load_agent(d)
    # wrong shape: the config says hidden 128, the weights were made for 32
    small = train("mlp", _parity_dataset(), steps=1, progress=False, hparams={"hidden": 32})
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, d / "model.safetensors")
    with pytest.raises(AgentError, match=r"has shape \(32, 2\) in model.safetensors but the config implies \(128, 2\)"):
        load_agent(d)
    # config that contradicts itself / is not an agent
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "kind": "banana"}))
    with pytest.raises(AgentError, match="unknown agent kind 'banana'"):
        load_agent(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(AgentError, match="config.json is not valid JSON"):
        load_agent(d)
    (d / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(AgentError, match="neither a seqlens agent"):
        load_agent(d)
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(AgentError, match="no model.safetensors \\(found pytorch_model.bin, a pickle format"):
        load_agent(d)
    with pytest.raises(AgentError, match="does not exist"):
        load_agent(tmp_path / "nope")


def test_zip_escaping_paths_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("../config.json", "{}")
    with pytest.raises(AgentError, match="contains a path outside its folder"):
        load_agent(tmp_path / "evil.zip")


def test_dataset_mismatch_is_explained():
    agent = train("mlp", _parity_dataset(), steps=1, progress=False)
    with pytest.raises(AgentError, match="has 4 observation features but the mlp agent expects 2"):
        check_dataset(agent, load_dataset(SAMPLE_DIR / "cartpole.npz"))
    with pytest.raises(AgentError, match="has continuous actions but the mlp agent takes discrete actions"):
        pend = load_dataset(SAMPLE_DIR / "masked-pendulum.npz")
        check_dataset(agent, pend)


def test_targets_far_outside_the_data_warn():
    agent = train("mlp", load_dataset(SAMPLE_DIR / "cartpole.npz"), steps=1, progress=False)
    assert check_targets(agent, [100, 500]) == []
    msgs = check_targets(agent, [5000])
    assert len(msgs) == 1 and "far outside the training data's returns (18 .. 500)" in msgs[0]


def test_bootstrap_ci_known_answers():
    assert bootstrap_ci(np.full(10, 3.0)) == (3.0, 3.0)
    lo, hi = bootstrap_ci(np.arange(100.0))
    assert lo < 49.5 < hi and hi - lo == pytest.approx(2 * 1.96 * np.arange(100.0).std() / 10, rel=0.15)


def test_evaluate_in_a_vector_env_has_design_keys():
    ds = load_dataset(SAMPLE_DIR / "cartpole.npz")
    agent = train("mlp", ds, steps=1, progress=False)
    res = evaluate(agent, None, episodes=3, progress=False)
    assert len(res) == 1 and res[0]["target_return"] is None and res[0]["episodes"] == 3
    assert {"target_return", "mean_return", "std_return", "ci_low", "ci_high", "episodes"} <= set(res[0])
    assert res[0]["ci_low"] <= res[0]["mean_return"] <= res[0]["ci_high"]
    assert all(1 <= r <= 500 for r in res[0]["returns"])


def test_make_config_reads_bounds_and_lengths_from_the_env():
    cfg = make_config("mlp", load_dataset(SAMPLE_DIR / "pendulum.npz"))
    assert cfg.action_low == [-2.0] and cfg.action_high == [2.0] and cfg.max_ep_len == 200
    assert cfg.rtg_scale == pytest.approx(1859.8, abs=1)


def test_cli_train_evaluate_inspect(tmp_path):
    out = tmp_path / "mlp"
    res = subprocess.run([sys.executable, "cli.py", "train", "--model", "mlp", "--data", str(SAMPLE_DIR / "cartpole.npz"),
                          "--out", str(out), "--steps", "20", "--json", "--threads", "1"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["steps"] == 20
    res = subprocess.run([sys.executable, "cli.py", "evaluate", "--agent", str(out), "--episodes", "2", "--json", "--save"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    results = json.loads(res.stdout)["results"]
    assert results[0]["episodes"] == 2
    res = subprocess.run([sys.executable, "cli.py", "inspect", str(out), "--json"], cwd=ROOT, capture_output=True, text=True)
    info = json.loads(res.stdout)
    assert {"kind", "obs_dim", "act_dim", "context_length", "n_params"} <= set(info)
    assert info["kind"] == "mlp" and info["obs_dim"] == 4 and info["evaluation"] == results
    res = subprocess.run([sys.executable, "cli.py", "evaluate", "--agent", str(out), "--target-returns", "1,x"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
