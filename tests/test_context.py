"""Context ablation: the truncated rollout reproduces the agent's own rollout at its full context, a masked
window equals a short one, known accuracies on a case only K' >= 2 can solve, and the shipped
masked-cartpole DT predicts the logged actions better with 20 steps of history than with 1."""
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from analysis.publish import catalog
from analysis.behaviour.context import (ContextAccuracy, ContextReturns, context_accuracy, context_returns,
                                        default_contexts, truncated_rollout)
from analysis.core.inputs import receptive_field
from models import load_agent
from models.base import AgentConfig
from models.decision_transformer import DecisionTransformer, DTOutput
from models.errors import AgentError
from analysis.behaviour.evaluate import evaluate
from models.rollout import run_episodes
from trajectories import Dataset, load_dataset

ROOT = Path(__file__).resolve().parent.parent
AGENTS, DATA = ROOT / "sample_data" / "agents", ROOT / "sample_data" / "datasets"


@pytest.fixture(scope="module")
def k20():
    return load_agent(AGENTS / "masked-cartpole-dt-k20")


@pytest.fixture(scope="module")
def masked_cartpole():
    return load_dataset(DATA / "masked-cartpole.npz")


def test_full_context_reproduces_the_agents_rollout(k20):
    """K' = receptive field is what the agent's own rollout computes: same actions, same returns. The shipped K=20
    agent is unbanded (issue 15: it acts on plain K-step windows, as trained), so its receptive field is K."""
    n, rf = 2, receptive_field(k20)
    assert rf == 20 and default_contexts(k20) == [1, 2, 4, 8, 16, 20]
    u = np.random.default_rng(4).random((n, 501), dtype=np.float32)
    ours, actions = truncated_rollout(k20, [rf] * n, [11, 12], [500.0] * n, u, record_actions=True)
    vec = gym.make_vec(k20.config.env_id, num_envs=n, vectorization_mode="sync")
    obs, _ = vec.reset(seed=[11, 12])
    ro = k20.start_rollout(n, np.full(n, 500.0), uniforms=u)
    done, ret = np.zeros(n, bool), np.zeros(n)
    for t in range(len(actions)):
        a = ro.act(obs)
        assert np.array_equal(a[~done], actions[t][~done]), t
        obs, r, term, trunc, _ = vec.step(a)
        ro.observe(r)
        ret += np.where(done, 0, r)
        done |= term | trunc
    vec.close()
    assert done.all() and np.array_equal(ours, ret)


def test_masked_window_equals_short_window(k20, masked_cartpole):
    """What the truncation relies on: masking the oldest keys of a window = feeding only the last K' steps."""
    from analysis.core.inputs import step_windows, training_data

    data = training_data(k20, masked_cartpole)
    steps = np.array([40, 300, 2000])
    long = step_windows(k20, data, steps, context=10)
    long["attention_mask"][:, :7] = 0
    short = step_windows(k20, data, steps, context=3)
    with torch.no_grad():
        k20.eval()
        a = k20(**long).action_preds[:, -1]
        b = k20(**short).action_preds[:, -1]
    assert torch.allclose(a, b, atol=1e-5)


class CopyPrevious(DecisionTransformer):
    """Predicts the previous step's action when it can see it (K' >= 2), else action 0. Its forward is its own, so it
    declares no partial forwards (analyses then read its whole forward)."""

    capabilities = DecisionTransformer.capabilities - {"partial_forward"}

    def forward(self, states, actions, returns_to_go, timesteps, attention_mask=None, **kw):
        B, L = states.shape[:2]
        logits = torch.zeros(B, L, 2)
        if L >= 2:
            seen = attention_mask[:, -2].bool() if attention_mask is not None else torch.ones(B, dtype=torch.bool)
            logits[:, -1] = torch.where(seen[:, None], 10 * actions[:, -2], torch.zeros(B, 2))
        zero = torch.zeros(B, L, 1)
        return DTOutput(logits, zero, torch.zeros(B, L, self.obs_dim), zero)


def test_only_a_longer_context_predicts_a_repeated_action():
    rng = np.random.default_rng(0)
    E, T = 12, 10
    bits = rng.integers(0, 2, E)
    bits[:2] = [0, 1]
    acts = np.repeat(bits, T)                                  # every episode repeats one action
    n = E * T
    ds = Dataset(rng.normal(size=(n, 2)).astype(np.float32), acts, np.ones(n, np.float32), np.zeros(n, bool),
                 np.zeros(n, bool), np.arange(0, n, T), source="repeat")
    agent = CopyPrevious(AgentConfig(kind="dt", obs_dim=2, act_dim=1, discrete=True, n_actions=2, context_length=2,
                                     max_ep_len=T, hparams={"hidden": 8, "n_layer": 2, "n_head": 1}))
    res = context_accuracy(agent, ds, contexts=[1, 2, 4], n_steps=n)
    assert isinstance(res, ContextAccuracy) and res.metric == "accuracy" and res.n_steps == n
    # K' = 1 sees no previous action: always 0, right on the action-0 steps only
    assert res.value[0] == pytest.approx((acts == 0).mean())
    # K' >= 2: right everywhere but on the first step of the action-1 episodes
    assert res.value[1] == pytest.approx(1 - bits.sum() / n) and res.value[2] == res.value[1]
    assert res.ci_low[0] <= res.value[0] <= res.ci_high[0]
    frame = res.to_frame()
    assert list(frame["context"]) == [1, 2, 4] and not frame["reference"].any()


def test_masked_cartpole_k20_predicts_better_with_history(k20, masked_cartpole):
    gru = load_agent(AGENTS / "masked-cartpole-gru")
    res = context_accuracy(k20, masked_cartpole, contexts=[1, 20], n_steps=600, seed=0,
                           references={"gru": gru}, name="masked-cartpole-dt-k20")
    acc1, acc20 = res.value
    assert acc20 > acc1 + 0.1                                  # measured 0.77 vs 0.59 on 2,000 steps
    assert res.ci_low[1] > res.ci_high[0]
    assert res.references[0].name == "gru" and res.references[0].context is None
    assert 0.5 < res.references[0].mean <= 1


def test_context_returns_smoke_and_catalog(masked_cartpole):
    k1 = load_agent(AGENTS / "masked-cartpole-dt-k1")
    res = context_returns(k1, contexts=[1, 3], episodes=2, target_return=300, seed=5,
                          references={"mlp-like": load_agent(AGENTS / "masked-cartpole-gru")})
    assert isinstance(res, ContextReturns) and res.returns.shape == (2, 2) and res.receptive_field == 3
    assert (res.returns >= 8).all() and np.allclose(res.mean, res.returns.mean(1))
    # K' = 3 is the receptive field: the agent's own (cached) rollout on the same seeds and draws
    u = np.random.default_rng(5).random((2, k1.config.max_ep_len + 1), dtype=np.float32)
    own = run_episodes(k1, 2, np.full(2, 300.0), env_seeds=[5, 6], uniforms=u)
    assert res.returns[1].tolist() == own.returns.tolist() == [22.0, 95.0]
    # a K = 1 model sees one step whatever K' allows: K' = 1 changes nothing
    assert np.array_equal(res.returns[0], res.returns[1])
    assert res.ci_low.tolist() == [22.0, 22.0] and res.ci_high.tolist() == [95.0, 95.0]
    gru = evaluate(load_agent(AGENTS / "masked-cartpole-gru"), None, episodes=2, seed=5, progress=False)[0]
    ref = res.references[0]
    assert ref.values.tolist() == gru["returns"] and (ref.mean, ref.ci_low, ref.ci_high) == (
        gru["mean_return"], gru["ci_low"], gru["ci_high"])
    frame = res.to_frame()
    assert len(frame) == 3 and frame["reference"].sum() == 1
    f = catalog.make("context_accuracy", k1, masked_cartpole, n_steps=100, references=False)
    assert len(f.data) == len(default_contexts(k1)) and f.figure.data
    with pytest.raises(AgentError, match="Decision Transformer"):
        context_accuracy(load_agent(AGENTS / "masked-cartpole-gru"), masked_cartpole)


def test_gru_outputs_batched_over_episodes_equal_one_episode_at_a_time(masked_cartpole):
    """The GRU runs its episodes together, right-padded and cut at the last step asked for; each output equals
    running that episode alone from its first step."""
    from analysis.behaviour.context import policy_outputs
    from analysis.core.inputs import training_data

    gru = load_agent(AGENTS / "masked-cartpole-gru")
    data = training_data(gru, masked_cartpole)
    steps = np.sort(np.random.default_rng(3).choice(masked_cartpole.n_transitions, 300, replace=False))
    got = policy_outputs(gru, masked_cartpole, steps, batch_size=16)
    ep_of = np.searchsorted(data.starts, steps, side="right") - 1
    want = torch.zeros_like(got)
    with torch.no_grad():
        for e in np.unique(ep_of):
            idx = np.arange(data.starts[e], data.ends[e])
            y, _ = gru(torch.from_numpy(data.obs[idx])[None], gru.prev_actions(torch.as_tensor(data.actions[idx])[None]))
            rows = np.flatnonzero(ep_of == e)
            want[rows] = y[0, steps[rows] - data.starts[e]]
    assert len(np.unique(ep_of)) > 16                       # several batches of episodes
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
