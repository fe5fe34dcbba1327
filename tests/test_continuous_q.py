"""The continuous value learners (kind "cq", models/continuous_q.py): IQL and CQL on hand-made problems with known
answers, episode_values' contract (shapes, raw units), checkpoints and their refusals."""
import json

import numpy as np
import pytest
import torch

from models import AgentError, load_agent, save_agent
from models.continuous_q import ContinuousQ, expectile_loss
from models.train import train
from trajectories import Dataset


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """every test here at one torch thread (conftest's one_thread)"""


def bandit(actions, rewards) -> Dataset:
    """One-step episodes (each terminated) from one constant Pendulum observation: a bandit whose actions are in
    Pendulum's env units [-2, 2]."""
    n = len(actions)
    return Dataset(np.tile(np.float32([1.0, 0.0, 0.0]), (n, 1)), np.asarray(actions, np.float32).reshape(n, 1),
                   np.asarray(rewards, np.float32), np.ones(n, bool), np.zeros(n, bool), np.arange(n),
                   env_id="Pendulum-v1", source="bandit")


def best_at_one(n=512, seed=0) -> Dataset:
    """Actions uniform over [-2, 2]; reward 3 - (a - 1)^2: the best action is 1.0 (env units), rewards -6 .. 3."""
    a = np.random.default_rng(seed).uniform(-2, 2, n)
    return bandit(a, 3 - (a - 1) ** 2)


def values_at(agent, actions) -> dict:
    obs = np.tile(np.float32([1.0, 0.0, 0.0]), (len(actions), 1))
    return agent.episode_values(obs, np.asarray(actions, np.float32).reshape(-1, 1))


# ---- IQL's expectile ---------------------------------------------------------------------------------------------
def test_expectile_loss_at_one_half_is_half_the_mean_squared_error_and_fits_the_mean():
    y = torch.tensor([0.0, 1.0, 2.0, 10.0])
    u = torch.tensor([-1.5, 0.5, 2.0])
    assert torch.allclose(expectile_loss(u, 0.5), 0.5 * (u ** 2).mean())
    fitted = {}
    for tau in (0.5, 0.9):
        v = torch.zeros((), requires_grad=True)
        opt = torch.optim.SGD([v], lr=0.1)
        for _ in range(2000):
            opt.zero_grad()
            expectile_loss(y - v, tau).backward()
            opt.step()
        fitted[tau] = v.item()
    assert fitted[0.5] == pytest.approx(3.25, abs=1e-4)   # the mean
    # the 0.9-expectile e solves 0.9 * sum_{y > e} (y - e) = 0.1 * sum_{y < e} (e - y): 0.9 (10 - e) = 0.1 (3e - 3), e = 7.75
    assert fitted[0.9] == pytest.approx(7.75, abs=1e-3)


# ---- known answers on a bandit -------------------------------------------------------------------------------
def test_iql_picks_the_bandits_best_action_and_its_values_are_in_raw_units():
    agent = train("cq", best_at_one(), steps=600, seed=0, batch_size=128, lr=3e-3, progress=False,
                  hparams={"method": "iql", "hidden": 32, "beta": 10.0, "expectile": 0.7})
    assert agent.config.hparams["reward_scale"] == pytest.approx(6.0, abs=0.05)   # the data's largest |reward|
    grid = np.linspace(-2, 2, 9)
    out = values_at(agent, grid)
    assert out["greedy"][0, 0] == pytest.approx(1.0, abs=0.15)   # env units (the unit action is 0.5)
    # Q of a one-step episode is its reward, in raw units (the trainer's scale undone)
    np.testing.assert_allclose(out["q_taken"], 3 - (grid - 1) ** 2, atol=0.35)
    # V: the 0.7-expectile of Q over the data's (uniform) actions, above their mean (3 - 7/3)
    assert 3 - 7 / 3 < out["v"][0] < 3


def test_cql_actor_picks_the_bandits_best_action():
    """1,000 steps: the SAC temperature starts at 1, above these scaled Q values (-1 .. 0.5), and the actor's mode
    reaches the best action once it has fallen (0.67 at 400 steps, 0.92 at 1,000)."""
    agent = train("cq", best_at_one(), steps=1000, seed=0, batch_size=64, lr=3e-3, progress=False,
                  hparams={"method": "cql", "hidden": 32, "alpha": 1.0, "n_sampled": 4})
    assert values_at(agent, [0.0])["greedy"][0, 0] == pytest.approx(1.0, abs=0.15)


def test_the_cql_penalty_lowers_q_off_the_datas_actions():
    """Data only at actions in [0.6, 1.0], reward 1: TD alone says nothing about a = -1.8; the penalty pushes it down."""
    a = np.random.default_rng(1).uniform(0.6, 1.0, 256)
    ds = bandit(a, np.ones_like(a))
    q = {}
    for alpha in (0.0, 5.0):
        agent = train("cq", ds, steps=300, seed=0, batch_size=64, lr=3e-3, progress=False,
                      hparams={"method": "cql", "hidden": 32, "alpha": alpha, "n_sampled": 4})
        q[alpha] = values_at(agent, [0.8, -1.8])["q_taken"]
    assert q[0.0][0] == pytest.approx(1.0, abs=0.2)   # TD alone: on the data, the reward
    gaps = {alpha: v[1] - v[0] for alpha, v in q.items()}
    assert gaps[0.0] > -1.0 and gaps[5.0] < gaps[0.0] - 5.0   # measured: -0.28 and -18.4


# ---- the contract ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_agent(tmp_path_factory):
    torch.set_num_threads(1)
    return train("cq", best_at_one(64), steps=5, seed=3, batch_size=16, progress=False,
                 hparams={"method": "cql", "hidden": 16})


def test_episode_values_shapes_units_and_what_it_refuses(small_agent):
    agent = small_agent
    rng = np.random.default_rng(0)
    obs, actions = rng.normal(size=(7, 3)).astype(np.float32), rng.uniform(-2, 2, (7, 1)).astype(np.float32)
    out = agent.episode_values(obs, actions)
    assert out["q"] is None
    assert out["q_taken"].shape == (7,) and out["v"].shape == (7,) and out["greedy"].shape == (7, 1)
    assert all(out[k].dtype == np.float32 for k in ("q_taken", "v", "greedy"))
    assert np.all(np.abs(out["greedy"]) <= 2.0)
    # raw units: the networks' scaled outputs times reward_scale, read through the named activations
    scale = agent.config.hparams["reward_scale"]
    with torch.no_grad():
        x = agent.normalize(torch.as_tensor(obs))
        unit = agent.actions_to_unit(torch.as_tensor(actions))
        q_net = torch.minimum(*agent._q(x, unit)).numpy()
        v_net = agent.v(x)[..., 0].numpy()
        _, cache = agent.run_with_cache((x, torch.as_tensor(actions)), names=["head.q", "head.v"])
    np.testing.assert_allclose(out["q_taken"], q_net * scale, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["v"], v_net * scale, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cache["head.q"].numpy(), out["q_taken"], rtol=1e-6, atol=1e-6)
    with pytest.raises(AgentError, match=r"expects actions \[T, 1\] for 7 observations"):
        agent.episode_values(obs, actions[:5])
    with pytest.raises(AgentError, match=r"expects observations \[T, 3\]"):
        agent.episode_values(obs[:, :2], actions)


def test_named_activations_and_capabilities(small_agent):
    agent = small_agent
    assert agent.has("q_values") and agent.has("acts") and agent.has("markov")
    assert not agent.has("return_conditioned") and not agent.has("step_tokens")
    assert agent.activation_names() == ["policy.hidden.0", "policy.hidden.1", "head.policy", "q1.hidden.0",
                                        "q1.hidden.1", "q2.hidden.0", "q2.hidden.1", "head.q", "v.hidden.0",
                                        "v.hidden.1", "head.v"]
    x = torch.zeros(4, 3)
    with torch.no_grad():
        plain = agent(x)
        out, cache = agent.run_with_cache(x)
        patched, _ = agent.run_with_cache(x, interventions={"head.v": lambda t: t + 1.0})
    for k in plain:
        assert torch.equal(plain[k], out[k])
    assert torch.equal(cache["head.v"], plain["v"])
    assert torch.allclose(patched["v"], plain["v"] + 1.0) and torch.equal(patched["q"], plain["q"])


def test_rollout_acts_greedily_with_the_values_of_episode_values(small_agent):
    agent = small_agent
    obs = np.random.default_rng(2).normal(size=(3, 3)).astype(np.float32)
    rollout = agent.start_rollout(3, sample=True, seed=9)
    actions = rollout.act(obs)
    want = agent.episode_values(obs, actions)
    np.testing.assert_array_equal(actions, want["greedy"])
    np.testing.assert_allclose(rollout.value(), want["v"], rtol=1e-6)
    np.testing.assert_array_equal(rollout.policy(), actions)


def test_training_is_deterministic_by_seed():
    ds = best_at_one(64)
    a, b = (train("cq", ds, steps=20, seed=5, batch_size=16, progress=False, hparams={"method": m, "hidden": 16})
            for m in ("iql", "iql"))
    c = train("cq", ds, steps=20, seed=6, batch_size=16, progress=False, hparams={"method": "iql", "hidden": 16})
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


# ---- checkpoints ------------------------------------------------------------------------------------------------
def test_save_load_round_trip_gives_equal_outputs(small_agent, tmp_path):
    path = save_agent(small_agent, tmp_path / "cq")
    loaded = load_agent(path)
    assert isinstance(loaded, ContinuousQ) and loaded.config.hparams == small_agent.config.hparams
    obs = np.random.default_rng(4).normal(size=(5, 3)).astype(np.float32)
    actions = np.linspace(-2, 2, 5, dtype=np.float32)[:, None]
    want, got = small_agent.episode_values(obs, actions), loaded.episode_values(obs, actions)
    for k in ("q_taken", "v", "greedy"):
        np.testing.assert_array_equal(got[k], want[k])


def _edit(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if key.startswith("hp_"):
            cfg["hparams"][key[3:]] = value
        else:
            cfg[key] = value
    (path / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("changes, message", [
    ({"discrete": True, "n_actions": 3}, "says discrete is true, but a 'cq' agent (IQL / CQL) acts with continuous actions."),
    ({"hp_method": "sarsa"}, "field 'hparams.method' is 'sarsa', expected one of iql, cql."),
    ({"hp_gamma": 2}, "field 'hparams.gamma' must be between 0 and 1, got 2."),
    ({"hp_reward_scale": -1}, "field 'hparams.reward_scale' must be positive, got -1."),
    ({"hp_hidden": "wide"}, "field 'hparams.hidden' must be an integer, got 'wide'."),
])
def test_config_contradictions_are_refused_before_anything_is_built(small_agent, tmp_path, monkeypatch, changes, message):
    path = save_agent(small_agent, tmp_path / "cq")
    _edit(path, **changes)
    import models.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "build_meta", lambda *a, **k: pytest.fail("built a model from a refused config"))
    with pytest.raises(AgentError) as e:
        load_agent(path)
    assert str(e.value) == f"cq: config.json {message}"


@pytest.mark.parametrize("changes, message", [
    ({"hp_hidden": 24}, "cq: policy.0.weight has shape (16, 3) in model.safetensors but the config implies (24, 3); "
                        "the config and weights disagree."),
    ({"hp_method": "iql"}, "cq: model.safetensors has tensors this 'cq' config does not use (log_temperature); the "
                           "config and weights disagree."),
    ({"act_dim": 2, "action_low": [-2, -2], "action_high": [2, 2], "env_id": None},
     "cq: policy.6.weight has shape (2, 16) in model.safetensors but the config implies (4, 16); the config and weights "
     "disagree."),
])
def test_config_against_tensor_contradictions_are_refused_before_the_model_is_built(small_agent, tmp_path, monkeypatch,
                                                                                     changes, message):
    path = save_agent(small_agent, tmp_path / "cq")
    _edit(path, **changes)
    import models.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "build_agent", lambda *a, **k: pytest.fail("built a model the weights contradict"))
    with pytest.raises(AgentError) as e:
        load_agent(path)
    assert str(e.value) == message


# ---- the shipped agent ------------------------------------------------------------------------------------------
def test_shipped_pendulum_iql_acts_as_stored_and_beats_the_datas_lower_quartile():
    from pathlib import Path

    from analysis.behaviour.evaluate import evaluate
    from trajectories import load_dataset
    from trajectories.samples import SAMPLE_DIR

    agent = load_agent(Path(__file__).resolve().parent.parent / "sample_data" / "agents" / "pendulum-iql")
    stored = agent.config.evaluation
    got = evaluate(agent, episodes=16, seed=stored["seed"], progress=False)[0]
    assert got["returns"] == stored["results"][0]["returns"]   # greedy and seeded: the same episodes
    returns = load_dataset(SAMPLE_DIR / "pendulum.npz").episode_returns
    assert got["ci_low"] > np.percentile(returns, 25)
    assert got["ci_low"] < np.median(returns) < got["ci_high"]


def test_training_on_what_it_cannot_read_is_one_sentence(tiny_discrete):
    from trajectories.dataset import DatasetError

    with pytest.raises(AgentError, match=r"^a cq agent \(IQL / CQL\) acts with continuous actions; this config says "
                                         r"discrete is true\.$"):
        train("cq", tiny_discrete, steps=1, progress=False)
    n = 6
    images = Dataset(np.zeros((n, 4, 4), np.float32), np.zeros((n, 1), np.float32), np.zeros(n, np.float32),
                     np.eye(1, n, n - 1, dtype=bool)[0], np.zeros(n, bool), np.array([0]), source="images")
    with pytest.raises(DatasetError, match=r"^The continuous value learner \(IQL / CQL\) needs vector observations"):
        train("cq", images, steps=1, progress=False)
