"""The one rollout engine (models/rollout.py): known CartPole returns of a scripted policy, batched equal to
one at a time, the context limit K' = 1 equal to a K = 1 model, recordings equal to what was stepped and to
the model's own attention, the episode limit, progress."""
import numpy as np
import pytest
import torch

import envs
from models.base import AgentConfig, RolloutBase
from models.decision_transformer import DecisionTransformer
from models.errors import AgentError
from models.loading import capabilities_of
from models.rollout import Episodes, episode_limit, episode_uniforms, run_episodes, run_one_at_a_time


class Scripted:
    """Push the cart toward the side the pole leans to (angle only, no velocity): falls after ~50 steps.
    Logs what it was shown and what it did, per act() call."""

    kind, discrete, act_dim, obs_dim, context_length = "mlp", True, 1, 4, 1
    config = AgentConfig(kind="mlp", obs_dim=4, act_dim=1, discrete=True, n_actions=2, env_id="CartPole-v1")

    def __init__(self):
        self.shown, self.did, self.rewards = [], [], []

    def has(self, capability: str) -> bool:
        return capability in capabilities_of(self.kind)

    def start_rollout(self, n, targets=None, sample=True, seed=0):
        agent = self

        class R(RolloutBase):
            def act(self, obs):
                a = (obs[:, 2] > 0).astype(np.int64)
                agent.shown.append(obs.copy())
                agent.did.append(a.copy())
                return a

            def observe(self, rewards):
                agent.rewards.append(np.asarray(rewards).copy())
        return R()


def plain_loop(seeds) -> list[float]:
    """The same policy in a single gymnasium env, one episode at a time: the independent answer."""
    out = []
    for s in seeds:
        env = envs.make("CartPole-v1")
        obs, _ = env.reset(seed=s)
        ret, over = 0.0, False
        while not over:
            obs, r, term, trunc, _ = env.step(int(obs[2] > 0))
            ret += r
            over = term or trunc
        env.close()
        out.append(ret)
    return out


def test_a_scripted_policy_earns_the_known_cartpole_returns():
    agent = Scripted()
    ep = run_episodes(agent, 4, seed=10, record=("observations", "actions", "rewards"))
    assert isinstance(ep, Episodes) and ep.env_id == "CartPole-v1"
    assert ep.returns.tolist() == [51.0, 43.0, 49.0, 52.0] == plain_loop([10, 11, 12, 13])
    assert ep.lengths.tolist() == [51, 43, 49, 52]                    # CartPole: 1 per step, the last one included
    # what was recorded is what the agent was shown and what it stepped, up to each episode's end
    S = ep.lengths.max()
    assert ep.actions.shape == (4, S) and ep.observations.shape == (4, S, 4) and len(agent.did) == S
    for i in range(4):
        n = ep.lengths[i]
        assert np.array_equal(ep.actions[i, :n], np.stack(agent.did)[:n, i])
        assert np.array_equal(ep.observations[i, :n], np.stack(agent.shown)[:n, i])
        assert ep.rewards[i, :n].sum() == ep.returns[i] and not ep.actions[i, n:].any()
    # env seeds given one by one equal seed + i
    again = run_episodes(Scripted(), 2, env_seeds=[12, 10])
    assert again.returns.tolist() == [49.0, 51.0]


def test_episode_limit():
    assert episode_limit("CartPole-v1") == 500 and episode_limit("Pendulum-v1") == 200
    with pytest.raises(ValueError, match="names a module"):   # EnvIdError (test_envs reloads envs)
        episode_limit("os:Env")
    capped = run_episodes(Scripted(), 2, seed=10, limit=20)
    assert capped.returns.tolist() == [20.0, 20.0] and capped.lengths.tolist() == [20, 20]


def test_progress_and_bad_arguments():
    seen = []
    run_episodes(Scripted(), 3, seed=10, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and fractions[0] == 0.0
    assert len(seen) == 51 and seen[-1][1] == "step 51: 3/3 episodes finished"   # longest of 51, 43, 49
    with pytest.raises(ValueError, match="cannot record"):
        run_episodes(Scripted(), 1, record=("thoughts",))
    with pytest.raises(AgentError, match="needs a Decision Transformer"):
        run_episodes(Scripted(), 1, record=("attention",))
    no_env = Scripted()
    no_env.config = AgentConfig(kind="mlp", obs_dim=4, act_dim=1, discrete=True, n_actions=2)
    with pytest.raises(AgentError, match="does not name an environment"):
        run_episodes(no_env, 1)


def random_dt(K=3, n_layer=2, seed=0, **hp) -> DecisionTransformer:
    torch.manual_seed(seed)
    cfg = AgentConfig(kind="dt", obs_dim=4, act_dim=1, discrete=True, n_actions=2, context_length=K, max_ep_len=500,
                      rtg_scale=100.0, env_id="CartPole-v1", hparams={"hidden": 16, "n_layer": n_layer, "n_head": 2, **hp})
    dt = DecisionTransformer(cfg).eval()
    with torch.no_grad():
        for p in dt.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return dt


def test_batched_equals_one_at_a_time():
    dt = random_dt()
    n = 4
    u = episode_uniforms(n, 500, seed=1)
    assert np.array_equal(u[2], episode_uniforms(3, 500, seed=1)[2])   # a row depends on (seed, i) only
    targets = np.array([20.0, 20.0, 300.0, 300.0])
    kw = dict(seed=5, uniforms=u, record=("observations", "actions", "rewards"))
    batched = run_episodes(dt, n, targets, **kw)
    alone = run_one_at_a_time(dt, n, targets, use_cache=False, **kw)
    for k in ("returns", "lengths", "actions", "observations", "rewards"):
        assert np.array_equal(getattr(batched, k), getattr(alone, k)), k
    assert len(set(batched.lengths.tolist())) > 1                   # episodes of different lengths


def test_context_one_equals_a_k1_model():
    """K' = 1: only the current step is visible, exactly what a K = 1 model with the same weights sees."""
    k3 = random_dt(K=3, n_layer=2, seed=2)
    k1 = DecisionTransformer(AgentConfig(**{**k3.config.to_dict(), "context_length": 1})).eval()
    k1.load_state_dict(k3.state_dict())
    n = 3
    u = episode_uniforms(n, 500, seed=0)
    kw = dict(seed=7, uniforms=u, record=("actions",))
    limited = run_episodes(k3, n, np.full(n, 200.0), context=1, **kw)
    own = run_episodes(k1, n, np.full(n, 200.0), **kw)
    full = run_episodes(k3, n, np.full(n, 200.0), **kw)
    assert np.array_equal(limited.returns, own.returns) and np.array_equal(limited.actions, own.actions)
    assert not np.array_equal(full.actions, own.actions)             # the longer context does change actions
    # a context as long as the receptive field is the model's own (cached) rollout
    assert np.array_equal(run_episodes(k3, n, np.full(n, 200.0), context=6, **kw).actions, full.actions)
    # per-env limits: env i with K'_i acts as it does alone with K'_i
    mixed = run_episodes(k3, 2, np.full(2, 200.0), context=[1, 6], seed=7, uniforms=u[:2], record=("actions",))
    assert np.array_equal(mixed.returns, [limited.returns[0], full.returns[1]])
    with pytest.raises(ValueError, match="at least 1 step"):
        run_episodes(k3, 1, [1.0], context=0)


def test_recorded_attention_is_the_models_own():
    dt = random_dt(K=3, n_layer=2, seed=3)
    n = 2
    u = episode_uniforms(n, 500, seed=0)
    ep = run_episodes(dt, n, np.full(n, 100.0), seed=1, uniforms=u, record=("observations", "actions", "attention"))
    S = ep.lengths.max()
    assert ep.attention.shape == (n, S, 2, 2, 3, 3)                 # [envs, steps, layers, heads, K steps, (R, s, a)]
    live = np.arange(S)[None] < ep.lengths[:, None]
    np.testing.assert_allclose(ep.attention[live].sum((-1, -2)), 1.0, atol=1e-5)
    assert (ep.attention[live][..., -1, 2] == 0).all()               # the action token of step t is not yet seen
    assert (ep.attention[:, 0, ..., :2, :] == 0).all()               # step 0 has no past
    # the same rows from a forward pass over the receptive field (n_layer * K = 6 steps) ending at step t
    i, t, W, K = int(np.argmax(ep.lengths)), 7, 6, 3
    win = slice(t - W + 1, t + 1)
    states = dt.normalize(torch.as_tensor(ep.observations[i, win]))[None]
    acts = torch.nn.functional.one_hot(torch.as_tensor(ep.actions[i, win]), 2).float()[None]
    acts[:, -1] = 0
    rtg = (100.0 - np.arange(t + 1))[win] / 100.0                  # CartPole pays 1 per step
    with torch.no_grad():
        out = dt(states, acts, torch.as_tensor(rtg, dtype=torch.float32)[None, :, None],
                 torch.arange(t - W + 1, t + 1)[None], output_attentions=True)
    ref = torch.stack([a[0, :, 3 * (W - 1) + 1, 3 * (W - K):] for a in out.attentions]).reshape(2, 2, K, 3).numpy()
    np.testing.assert_allclose(ep.attention[i, t], ref, atol=1e-5)
    # the naive twin (recompute every step) records the same attention
    naive = run_episodes(dt, n, np.full(n, 100.0), seed=1, uniforms=u, use_cache=False, record=("attention",))
    np.testing.assert_allclose(naive.attention, ep.attention, atol=1e-5)
