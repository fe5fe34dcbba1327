"""Return sweeps: a synthetic agent that earns exactly its target, interval estimates, the batched sweep
equal to the one-at-a-time twin, the offline return-to-go shift."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from analysis.core.inputs import receptive_field, step_windows, training_data
from analysis.behaviour.sweeps import interval_estimates, iqm, rtg_shift_replay, rtg_sweep, rtg_sweep_naive, sweep_attention
from models.base import AgentConfig, RolloutBase
from models.decision_transformer import DecisionTransformer
from models.errors import AgentError
from models.loading import capabilities_of
from test_attention import episodes_dataset, make_dt

ENV = "seqlens-test/Counter-v0"


class Counter(gym.Env):
    """Action 0 earns 1 and goes on; action 1 earns nothing and ends the episode."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(3, self.t, np.float32)
        return obs, (0.0 if action == 1 else 1.0), bool(action == 1), False, {}


if ENV not in gym.registry:
    gym.register(ENV, entry_point=Counter, max_episode_steps=60)


class ExactAgent:
    """Stops as soon as it has earned its target: achieved return == target (up to the time limit)."""

    kind, discrete, act_dim, obs_dim, context_length = "dt", True, 1, 3, 1
    config = AgentConfig(kind="dt", obs_dim=3, act_dim=1, discrete=True, n_actions=2, env_id=ENV, max_ep_len=100,
                         dataset={"return_min": 0, "return_max": 60})

    def has(self, capability: str) -> bool:
        """What an agent of its kind can do (the real interface: analyses ask this, never the kind), less attention:
        a scripted stand-in has no attention maps to record."""
        return capability in capabilities_of(self.kind) - {"attention"}

    def start_rollout(self, n, targets, sample=True, seed=0, use_cache=True, uniforms=None):
        class R(RolloutBase):
            left = np.asarray(targets, float).copy()

            def act(self, obs):
                return (self.left <= 0).astype(np.int64)

            def observe(self, rewards):
                self.left -= rewards
        return R()


def test_an_agent_that_earns_its_target_gives_the_diagonal():
    targets = [0, 5, 12, 30, 45]
    sw = rtg_sweep(ExactAgent(), targets, episodes=3)
    assert sw.returns.tolist() == [[t] * 3 for t in targets]
    s = sw.summary()
    assert s["mean"].tolist() == targets and s["ci_low"].tolist() == targets and s["iqm_ci_high"].tolist() == targets
    assert spearmanr(targets, s["mean"]).statistic == pytest.approx(1.0)
    assert sw.lengths.tolist() == [[t + 1] * 3 for t in targets]       # the stopping step counts
    dist = sw.action_distribution(2)
    share_stop = dist[dist.action == 1]["share"].to_numpy()
    np.testing.assert_allclose(share_stop, [1 / (t + 1) for t in targets])
    assert sw.to_frame().shape == (15, 4)
    capped = rtg_sweep(ExactAgent(), [100], episodes=1)
    assert capped.returns[0, 0] == 60                                 # the time limit, not an error


def test_interval_estimates_known_answers():
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)                  # mean of 3, 4, 5, 6
    est = interval_estimates(np.array([7.0, 7.0, 7.0]))
    assert est["ci_low"] == est["ci_high"] == est["mean"] == est["iqm"] == 7.0
    rng = np.random.default_rng(1)
    x = rng.normal(10, 1, 200)
    est = interval_estimates(x)
    assert est["ci_low"] < 10 < est["ci_high"] and est["ci_high"] - est["ci_low"] < 0.5
    assert interval_estimates([3.0])["iqm_ci_low"] == 3.0


def test_batched_sweep_equals_one_episode_at_a_time_on_a_real_dt():
    torch.manual_seed(0)
    cfg = AgentConfig(kind="dt", obs_dim=4, act_dim=1, discrete=True, n_actions=2, context_length=3, max_ep_len=500,
                      rtg_scale=100.0, env_id="CartPole-v1", hparams={"hidden": 16, "n_layer": 2, "n_head": 1})
    dt = DecisionTransformer(cfg).eval()
    with torch.no_grad():
        for p in dt.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    fast = rtg_sweep(dt, [20, 200], episodes=2, seed=3)
    naive = rtg_sweep_naive(dt, [20, 200], episodes=2, seed=3)
    assert np.array_equal(fast.returns, naive.returns) and np.array_equal(fast.actions, naive.actions)
    assert (fast.lengths > 5).any()
    # the recording is the episode: the recorded actions, stepped in a fresh env reset with seed 3 + i,
    # give back the recorded observations, rewards and lengths
    for i, (obs, acts, n) in enumerate(zip(fast.observations.reshape(4, *fast.observations.shape[2:]),
                                           fast.actions.reshape(4, -1), fast.lengths.ravel())):
        env = gym.make("CartPole-v1")
        o, _ = env.reset(seed=3 + i)
        for t in range(n):
            assert np.array_equal(o, obs[t]), (i, t)
            o, r, term, trunc, _ = env.step(int(acts[t]))
            assert r == fast.rewards.reshape(4, -1)[i, t]
            assert (term or trunc) == (t == n - 1)
        env.close()
    assert fast.returns.ravel().tolist() == fast.lengths.ravel().astype(float).tolist()   # CartPole pays 1 per step
    shares = sweep_attention(dt, fast)
    np.testing.assert_allclose(shares.groupby("target_return")["share"].sum(), 1.0, atol=1e-5)


@pytest.mark.parametrize("banded", [True, False])
def test_attention_recorded_while_acting_equals_the_recomputed_attention(banded):
    """The sweep keeps the action token's attention from the rollout itself; recomputing it from the recorded
    episodes (one pass per episode, or a K-step window per step for HF semantics) gives the same shares."""
    from dataclasses import replace as dc_replace

    torch.manual_seed(1)
    hp = {"hidden": 16, "n_layer": 2, "n_head": 2, "banded": banded}
    cfg = AgentConfig(kind="dt", obs_dim=4, act_dim=1, discrete=True, n_actions=2, context_length=3, max_ep_len=500,
                      rtg_scale=100.0, env_id="CartPole-v1", hparams=hp)
    dt = DecisionTransformer(cfg).eval()
    with torch.no_grad():
        for p in dt.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    sw = rtg_sweep(dt, [20, 200], episodes=2, seed=5)
    assert sw.token_shares is not None and (sw.lengths > 3).all()
    recorded = sweep_attention(dt, sw)
    recomputed = sweep_attention(dt, dc_replace(sw, token_shares=None))
    np.testing.assert_allclose(recorded["share"], recomputed["share"], atol=1e-5)
    assert recorded["share"].std() > 0.01   # not uniform by construction


def test_shift_replay_known_answers():
    ds = episodes_dataset()
    m = make_dt(K=3, n_layer=2)
    r = rtg_shift_replay(m, ds, episode=2, shifts=[-50, 0, 50])
    assert r.predictions.shape == (3, 14, 2)
    np.testing.assert_allclose(r.predictions.sum(-1), 1.0, atol=1e-5)
    assert np.abs(r.predictions[0] - r.predictions[2]).max() > 1e-3   # the return token matters to this model
    # each shift's predictions are the model's action probabilities from its receptive-field window at each
    # step with every R token shifted (analysis.core.inputs.step_windows), computed here one window per step
    data = training_data(m, ds)
    steps = np.arange(data.starts[2], data.ends[2])
    with torch.no_grad():
        for k, shift in enumerate([-50, 0, 50]):
            w = step_windows(m, data, steps, context=receptive_field(m), rtg_shift=shift)
            np.testing.assert_allclose(r.predictions[k], m(**w).action_preds[:, -1].softmax(-1).numpy(), atol=1e-6)
    np.testing.assert_allclose(r.returns_to_go, ds.returns_to_go[steps], rtol=1e-5)
    with torch.no_grad():
        m.embed_return.weight.zero_()                                 # ... and now it cannot
    r = rtg_shift_replay(m, ds, episode=2, shifts=[-50, 0, 50])
    np.testing.assert_allclose(r.predictions[0], r.predictions[2], atol=1e-6)
    assert r.logged_action_probability().shape == (3, 14)
    assert r.to_frame().shape == (3 * 14 * 2, 4)


def test_sweeps_refuse_agents_that_are_not_return_conditioned():
    agent = ExactAgent()
    agent.kind = "mlp"
    with pytest.raises(AgentError, match="needs a Decision Transformer"):
        rtg_sweep(agent, [1], episodes=1)
    no_env = ExactAgent()
    no_env.config = AgentConfig(kind="dt", obs_dim=3, act_dim=1, discrete=True, n_actions=2)
    with pytest.raises(AgentError, match="does not name an environment"):
        rtg_sweep(no_env, [1], episodes=1)


def test_shift_replay_of_a_long_episode_samples_steps_and_keeps_their_values():
    """An HF-semantics DT recomputes a window per step, so a long episode is replayed at max_steps evenly spaced
    steps; each sampled step's prediction equals the full replay's at that step, and the frame says which."""
    ds = episodes_dataset(lengths=(5, 40))
    m = make_dt(K=3, n_layer=2, banded=False)
    full = rtg_shift_replay(m, ds, episode=1, shifts=[-20, 20])
    part = rtg_shift_replay(m, ds, episode=1, shifts=[-20, 20], max_steps=9)
    assert full.steps.tolist() == list(range(40)) and part.length == 40
    assert part.steps.tolist() == np.linspace(0, 39, 9).round().astype(int).tolist()
    np.testing.assert_allclose(part.predictions, full.predictions[:, part.steps], atol=1e-6)
    assert sorted(part.to_frame()["step"].unique().tolist()) == part.steps.tolist()
    banded = rtg_shift_replay(make_dt(K=3, n_layer=2), ds, episode=1, shifts=[0], max_steps=9)
    assert len(banded.steps) == 40   # one pass covers every step of a native DT: nothing to sample
