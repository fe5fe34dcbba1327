"""Value agents (issue 24, item 1): kinds q and drqn on tiny hand-made MDPs with known answers, their units, greedy
acting, checkpoints, hostile configs, online DQN, and the one-sentence refusals of DT-only analyses."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from models import load_agent, save_agent
from models.errors import AgentError
from models.train import train
from trajectories import Dataset

GAMMA = 0.9
S0, S1 = [1.0, 0.0], [0.0, 1.0]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """every test here at one torch thread (conftest's one_thread)"""


def _dataset(episodes, copies: int = 4, n_actions: int = 2, env_id=None) -> Dataset:
    """episodes: (observations, actions, rewards, terminated at the end), repeated `copies` times."""
    obs, act, rew, term, starts = [], [], [], [], []
    for _ in range(copies):
        for o, a, r, ends in episodes:
            starts.append(len(obs))
            obs += o
            act += a
            rew += r
            term += [False] * (len(o) - 1) + [ends]
    term = np.array(term)
    trunc = np.zeros(len(term), bool)
    trunc[np.array(starts[1:] + [len(term)]) - 1] = ~term[np.array(starts[1:] + [len(term)]) - 1]
    return Dataset(np.array(obs, np.float32), np.array(act), np.array(rew, np.float32), term, trunc,
                   np.array(starts), source="chain", n_actions=n_actions, env_id=env_id)


# A 2-state chain. s0: action 0 ends with reward 0.5; action 1 goes to s1 (reward 0). s1: action 1 ends with reward 1,
# action 0 with 0. Optimal Q in closed form: Q(s0) = [0.5, GAMMA * 1], Q(s1) = [0, 1].
CHAIN = [([S0], [0], [0.5], True), ([S0, S1], [1, 1], [0.0, 1.0], True), ([S0, S1], [1, 0], [0.0, 0.0], True)]
Q_STAR = np.array([[0.5, GAMMA], [0.0, 1.0]])


def _q(agent, obs=(S0, S1), actions=(1, 1)):
    return agent.episode_values(np.array(obs, np.float32), np.array(actions))


def test_cql_with_alpha_0_converges_to_the_optimal_q_of_a_chain():
    hp = {"alpha": 0.0, "hidden": 32, "gamma": GAMMA, "tau": 0.05}
    agent = train("q", _dataset(CHAIN), steps=1500, seed=0, hparams=hp, progress=False, rtg_scale=1.0)
    np.testing.assert_allclose(_q(agent)["q"], Q_STAR, atol=0.03)


def test_cql_lifts_the_taken_action_above_one_the_data_never_takes():
    """Data that only ever takes action 1 in s0 and s1 (ending with reward 1): offline double DQN (alpha 0) leaves the
    never-taken action's Q wherever the network extrapolates it; CQL pushes it below the taken one by a margin."""
    only = [([S0, S1], [1, 1], [0.0, 1.0], True)]
    hp = {"hidden": 32, "gamma": GAMMA, "tau": 0.05}
    cql = _q(train("q", _dataset(only, 8), steps=800, seed=0, hparams={**hp, "alpha": 1.0}, progress=False))
    assert (cql["q"][:, 1] > cql["q"][:, 0] + 0.3).all(), cql["q"]
    assert (cql["greedy"] == 1).all()


def test_episode_values_are_in_raw_return_units():
    """Rewards are divided by rtg_scale for the loss; episode_values multiplies it back: the same chain with rewards x
    100 (rtg_scale 100 from the data) gives Q x 100."""
    big = [(o, a, [r * 100 for r in rs], e) for o, a, rs, e in CHAIN]
    hp = {"alpha": 0.0, "hidden": 32, "gamma": GAMMA, "tau": 0.05}
    agent = train("q", _dataset(big), steps=1500, seed=0, hparams=hp, progress=False)
    assert agent.config.rtg_scale == 100.0
    v = _q(agent, actions=(0, 1))
    np.testing.assert_allclose(v["q"], Q_STAR * 100, atol=3)
    assert v["q"].dtype == np.float32 and v["q"].shape == (2, 2)
    assert v["q_taken"].shape == v["v"].shape == v["greedy"].shape == (2,)
    np.testing.assert_array_equal(v["q_taken"], v["q"][[0, 1], [0, 1]])
    np.testing.assert_array_equal(v["v"], v["q"].max(1))
    np.testing.assert_array_equal(v["greedy"], v["q"].argmax(1))
    with torch.no_grad():
        _, cache = agent.run_with_cache(agent.normalize(torch.tensor([S0, S1])), names=["head.q", "head.v", "hidden.*"])
    np.testing.assert_allclose(cache["head.q"].numpy(), v["q"], rtol=1e-6)
    np.testing.assert_allclose(cache["head.v"].numpy(), v["v"], rtol=1e-6)
    assert cache["hidden.0"].shape == (2, 32)


# A memory task: the cue (+1 / -1 in the first observation) says which action pays at the last step; the steps between
# look alike. A Markov Q sees only the blank last observation and can do no better than chance; a DRQN remembers.
def _memory_episodes(length: int = 4):
    eps = []
    for cue in (1.0, -1.0):
        obs = [[cue, 0.0]] + [[0.0, 0.0]] * (length - 2) + [[0.0, 1.0]]
        good = 0 if cue > 0 else 1
        for last in (0, 1):
            eps.append((obs, [0] * (length - 1) + [last], [0.0] * (length - 1) + [1.0 if last == good else 0.0], True))
    return eps


def test_drqn_solves_a_memory_task_the_markov_q_cannot():
    ds = _dataset(_memory_episodes(), copies=8)
    hp = {"alpha": 0.0, "hidden": 32, "gamma": GAMMA, "tau": 0.05}
    drqn = train("drqn", ds, steps=600, seed=0, hparams={**hp, "seq_len": 4, "burn_in": 0}, progress=False)
    q = train("q", ds, steps=600, seed=0, hparams=hp, progress=False)
    for cue, good in ((1.0, 0), (-1.0, 1)):
        obs = np.array([[cue, 0.0], [0, 0], [0, 0], [0, 1]], np.float32)
        d = drqn.episode_values(obs, np.zeros(4, int))
        assert d["greedy"][-1] == good and d["q"][-1, good] > 0.8 and d["q"][-1, 1 - good] < 0.2, d["q"]
        m = q.episode_values(obs, np.zeros(4, int))
        np.testing.assert_allclose(m["q"][-1], [0.5, 0.5], atol=0.1)   # the average of the two cues: no memory


def test_greedy_rollout_acts_argmax_q_and_reports_max_q():
    from models.base import ROLLOUT_METHODS, Rollout

    agent = train("q", _dataset(CHAIN), steps=50, seed=0, hparams={"hidden": 16}, progress=False)
    ro = agent.start_rollout(2, sample=True)
    assert isinstance(ro, Rollout) and all(callable(getattr(ro, m)) for m in ROLLOUT_METHODS)
    obs = np.array([S0, S1], np.float32)
    actions = ro.act(obs)
    with torch.no_grad():
        q = agent(agent.normalize(torch.from_numpy(obs))).numpy()
    np.testing.assert_array_equal(actions, q.argmax(1))
    np.testing.assert_allclose(ro.value(), q.max(1), rtol=1e-6)
    np.testing.assert_array_equal(ro.policy(), np.eye(2)[q.argmax(1)])


def test_drqn_rollout_equals_episode_values_along_the_same_actions():
    ds = _dataset(_memory_episodes(), copies=2)
    agent = train("drqn", ds, steps=30, seed=0, hparams={"hidden": 16, "seq_len": 4, "burn_in": 2}, progress=False)
    obs = np.array([[1.0, 0.0], [0, 0], [0, 0], [0, 1]], np.float32)
    ro, acts, values = agent.start_rollout(1), [], []
    for t in range(4):
        acts.append(int(ro.act(obs[t:t + 1])[0]))
        values.append(float(ro.value()[0]))
    v = agent.episode_values(obs, np.array(acts))
    np.testing.assert_array_equal(v["greedy"], acts)
    np.testing.assert_allclose(v["v"], values, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["q", "drqn"])
def test_save_load_round_trip_gives_equal_outputs(kind, tmp_path):
    ds = _dataset(_memory_episodes(), copies=2)
    agent = train(kind, ds, steps=20, seed=3, hparams={"hidden": 16}, progress=False)
    save_agent(agent, tmp_path / "a")
    back = load_agent(tmp_path / "a")
    assert back.has("q_values") and back.has("acts") and not back.has("return_conditioned")
    assert back.has("markov" if kind == "q" else "recurrent")
    obs, acts = ds.episode(0).observations, ds.episode(0).actions
    for k, v in agent.episode_values(obs, acts).items():
        np.testing.assert_array_equal(back.episode_values(obs, acts)[k], v)
    assert set(json.loads((tmp_path / "a" / "config.json").read_text())["hparams"]) >= {"alpha", "gamma", "method"}


@pytest.mark.parametrize("kind", ["q", "drqn"])
def test_training_is_deterministic_by_seed(kind):
    ds = _dataset(_memory_episodes(), copies=2)
    a, b = (train(kind, ds, steps=30, seed=5, hparams={"hidden": 16}, progress=False) for _ in range(2))
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k


def _saved(tmp_path, kind="q", **edits):
    ds = _dataset(CHAIN)
    save_agent(train(kind, ds, steps=2, seed=0, hparams={"hidden": 8}, progress=False), tmp_path / "a")
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    for key, value in edits.items():
        if key.startswith("hp_"):
            cfg["hparams"][key[3:]] = value
        else:
            cfg[key] = value
    (tmp_path / "a" / "config.json").write_text(json.dumps(cfg))
    return tmp_path / "a"


@pytest.mark.parametrize("edits, says", [
    ({"n_actions": 3}, "has shape (2, 8) in model.safetensors but the config implies (3, 8)"),
    ({"hp_hidden": 9}, "the config and weights disagree"),
    ({"discrete": False, "n_actions": None}, "a 'q' agent chooses among discrete actions"),
    ({"hp_method": "iql"}, "field 'hparams.method' is 'iql', expected one of cql, dqn"),
    ({"hp_gamma": 1.5}, "field 'hparams.gamma' must be between 0 and 1"),
    ({"hp_alpha": float("nan")}, "field 'hparams.alpha' must be a finite number"),
    ({"hp_n_layer": 10 ** 9}, "field 'hparams.n_layer' must be at most"),
    ({"hp_seq_len": 4}, "has unknown q hparams (seq_len)"),
    ({"hp_double": "yes"}, "field 'hparams.double' must be true or false"),
])
def test_config_and_tensor_contradictions_are_one_sentence(tmp_path, edits, says):
    with pytest.raises(AgentError) as e:
        load_agent(_saved(tmp_path, **edits))
    msg = str(e.value)
    assert says in msg, msg
    assert msg.count(". ") == 0 and "\n" not in msg and "Traceback" not in msg


def test_pages_name_the_value_families():
    """ui.page names the families a page needs through kinds_with, over every kind of the registry (cq too)."""
    from models.loading import capabilities_of, family_name, kinds_with

    assert {"q", "drqn"} <= set(kinds_with(("q_values", "acts")))
    assert kinds_with(("q_values", "markov"))[0] == "q" and "drqn" in kinds_with(("q_values", "recurrent"))
    assert family_name("drqn") == "a recurrent Q-network (DRQN)"
    assert "cq" in kinds_with(("q_values", "markov"))   # models/continuous_q.py


# ---- online DQN ------------------------------------------------------------------------------------------
class _TwoArms(gym.Env):
    """One step per episode, a constant observation: action 1 pays 1, action 0 pays 0."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.array([0.5, -0.5], np.float32), {}

    def step(self, action):
        return np.array([0.5, -0.5], np.float32), float(action == 1), True, False, {}


@pytest.fixture
def two_arms():
    env_id = "seqlens-test/TwoArms-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=_TwoArms, max_episode_steps=1)
    return env_id


def test_online_dqn_learns_the_right_action_and_is_deterministic(two_arms):
    from models.online_train import train_online

    hp = {"n_envs": 2, "learning_starts": 20, "buffer_size": 200, "hidden": 16, "tau": 0.1}
    agent = train_online("q", two_arms, steps=400, seed=1, hparams=hp, batch_size=16, lr=3e-3, progress=False)
    v = agent.episode_values(np.array([[0.5, -0.5]], np.float32), np.array([1]))
    assert v["greedy"][0] == 1
    np.testing.assert_allclose(v["q"][0], [0.0, 1.0], atol=0.15)   # terminal steps: Q is the reward
    again = train_online("q", two_arms, steps=400, seed=1, hparams=hp, batch_size=16, lr=3e-3, progress=False)
    for (k, x), (_, y) in zip(agent.state_dict().items(), again.state_dict().items()):
        assert torch.equal(x, y), k
    assert agent.config.hparams["method"] == "dqn" and agent.config.training["online"] is True


def test_online_training_refuses_offline_methods_and_offline_training_refuses_dqn(two_arms):
    from models.online_train import train_online

    with pytest.raises(ValueError, match="learns offline through models.train.train"):
        train_online("q", two_arms, steps=10, hparams={"method": "cql"})
    with pytest.raises(ValueError, match="learns online: train it with models.online_train.train_online"):
        train("q", _dataset(CHAIN), steps=2, hparams={"method": "dqn"}, progress=False)
    with pytest.raises(ValueError, match="^400 steps would run no update: the first comes after learning_starts "):
        train_online("q", two_arms, steps=400, hparams={"learning_starts": 1000})


# ---- DT-only analyses asked of a value agent --------------------------------------------------------------
def test_return_sweep_and_context_ablation_refuse_a_value_agent_in_one_sentence():
    from analysis.behaviour import context, sweeps

    ds = _dataset(CHAIN, env_id="CartPole-v1")
    agent = train("q", _dataset([([[0, 0, 0, 0]], [0], [1.0], True)]), steps=2, seed=0, hparams={"hidden": 8},
                  progress=False)
    with pytest.raises(AgentError, match=r"^a return sweep needs a Decision Transformer; this agent is a q\.$"):
        sweeps.rtg_sweep(agent, [10, 20], episodes=1, env_id="CartPole-v1")
    with pytest.raises(AgentError, match=r"^context ablation truncates a Decision Transformer's history; got a q agent\.$"):
        context.context_returns(agent, contexts=[1], episodes=1)
    with pytest.raises(AgentError, match=r"^shifting the return-to-go needs a Decision Transformer; this agent is a q\.$"):
        sweeps.rtg_shift_replay(agent, ds)
