"""Trajectory Transformer: discretizer known answers, KV cache = full forward, beam search with and without
the cache, a tiny model that learns a deterministic sequence, the loss options and attention shapes."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.base import AgentConfig
from models.discretizer import QuantileDiscretizer
from models.trajectory_transformer import TrajectoryTransformer, discounted_values
from conftest import fit
from models.windows import TrainingData
from trajectories import Dataset, load_dataset

ROOT = Path(__file__).resolve().parent.parent
L = 12  # ramp episode length (and bins: every ramp value gets its own bin)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: on a shared 2-core machine, OpenMP threads waiting on each other cost more than the
    ops themselves (the trained fixture took 5 min instead of 5 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- discretizer -------------------------------------------------------------------------------------
def test_discretizer_known_bins():
    q = QuantileDiscretizer.fit(np.arange(9.0)[:, None], 4)
    assert q.edges.tolist() == [[2.0, 4.0, 6.0]]
    assert q.centres.tolist() == [[0.5, 2.5, 4.5, 7.0]]
    assert q.encode(np.array([[-5.0], [1.9], [2.0], [6.0], [100.0]])).ravel().tolist() == [0, 0, 1, 3, 3]


def test_discretizer_round_trip_and_token_ranges():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -3.0]
    q = QuantileDiscretizer.fit(x, 50)
    assert (q.counts == 100).all()                              # equal-frequency bins
    tokens = np.arange(150).reshape(3, 50).T                    # every bin of every dimension
    assert np.array_equal(q.encode(q.decode(tokens)), tokens)   # bin centres round-trip exactly
    tok = q.encode(x)
    for d in range(3):
        assert tok[:, d].min() == d * 50 and tok[:, d].max() == d * 50 + 49
    assert np.array_equal(q.encode(x[:, 1:], start=1), tok[:, 1:])
    q2 = QuantileDiscretizer.from_dict(json.loads(json.dumps(q.to_dict())))
    assert np.array_equal(q2.decode(tok), q.decode(tok)) and np.array_equal(q2.encode(x), tok)


def test_discretizer_point_masses_decode_exactly():
    """A clipped torque (30% of steps at exactly -2 or +2) gets a bin of its own."""
    rng = np.random.default_rng(1)
    a = np.concatenate([np.full(300, -2.0), np.full(300, 2.0), rng.uniform(-2, 2, 400)])[:, None]
    q = QuantileDiscretizer.fit(a, 20)
    assert q.decode(q.encode(np.array([[-2.0], [2.0]]))).ravel().tolist() == [-2.0, 2.0]


def test_pendulum_reconstruction_floor():
    ds = load_dataset(ROOT / "sample_data" / "datasets" / "pendulum.npz")
    errs = [QuantileDiscretizer.fit(ds.observations, n).reconstruction_error(ds.observations) for n in (50, 100, 200)]
    assert 0.03 < errs[1] < 0.06                                # DESIGN measured 0.044 at 100 bins
    assert errs[0] > errs[1] > errs[2]


def test_discounted_values():
    v = discounted_values(np.array([1, 1, 1, 2, 2.0]), np.array([0, 3]), np.array([3, 5]), 0.5)
    assert v.tolist() == [1.75, 1.5, 1.0, 3.0, 2.0]


# ---- a tiny model on a deterministic ramp ------------------------------------------------------------
def ramp_dataset(n_episodes=16, seed=0) -> Dataset:
    """obs = [t / (L-1), t % 3] (deterministic), random actions +-1, reward = obs1 + action."""
    rng = np.random.default_rng(seed)
    t = np.tile(np.arange(L), n_episodes)
    obs = np.stack([t / (L - 1), t % 3], axis=1).astype(np.float32)
    act = rng.choice([-1.0, 1.0], size=(len(t), 1)).astype(np.float32)
    rew = obs[:, 1] + act[:, 0]
    trunc = t == L - 1
    return Dataset(obs, act, rew, np.zeros(len(t), bool), trunc, np.arange(0, len(t), L), env_id="Ramp-v0", source="ramp")


def make_model(ds, K=4, **hp) -> TrajectoryTransformer:
    torch.manual_seed(0)
    cfg = AgentConfig(kind="tt", obs_dim=ds.obs_dim, act_dim=ds.act_dim, discrete=False, context_length=K,
                      action_low=[-1.0], action_high=[1.0],
                      hparams={"n_bins": L, "hidden": 32, "n_layer": 2, "n_head": 2, "dropout": 0.0, **hp})
    return TrajectoryTransformer.for_dataset(cfg, ds)


def training_data(ds):
    return TrainingData.build(ds, np.zeros(ds.obs_dim), np.ones(ds.obs_dim), 1.0, 100)


@pytest.fixture(scope="module")
def trained():
    ds = ramp_dataset()
    m = make_model(ds, discount=0.5)
    data, rng = training_data(ds), np.random.default_rng(0)
    fit(m, data, 400, rng)
    return m, ds


def test_ramp_bins_are_exact():
    ds = ramp_dataset()
    m = make_model(ds)
    tok = m.tokenize(ds)
    assert np.array_equal(m.discretizer.decode(tok[:, :4]), np.c_[ds.observations, ds.actions, ds.rewards])


def test_trained_model_predicts_the_ramp(trained):
    m, ds = trained
    ep = ds.episode(3)
    ctx = m.context_tokens(ep.observations[:3], ep.actions[:2], ep.rewards[:2])   # 2 transitions + obs at t=2
    pred = m.predict_trajectory(ctx, ep.actions[2:7])                              # crosses the 4-transition window
    assert np.array_equal(pred.observations[0], ep.observations[3:8])
    assert np.array_equal(pred.rewards[0], ep.rewards[2:7])
    again = m.predict_trajectory(ctx, ep.actions[2:7], use_cache=False)
    assert np.array_equal(again.tokens, pred.tokens)


def test_trained_model_plans_the_better_action(trained):
    """reward = obs1 + action and the future does not depend on it: the plan must choose +1."""
    m, ds = trained
    ep = ds.episode(0)
    for t in (0, 1, 5):
        plan = m.plan(ep.observations[:t + 1], ep.actions[:t], ep.rewards[:t], horizon=2, beam_width=4, seed=t)
        assert plan.first_action.tolist() == [1.0]
        assert np.array_equal(plan.observations[0], ep.observations[t])


# ---- forward, cache, beam search ---------------------------------------------------------------------
def test_kv_cache_equals_full_forward():
    ds = ramp_dataset()
    m = make_model(ds, K=6).eval()
    x = torch.from_numpy(m.tokenize(ds)[:6].reshape(1, -1)[:, :-1]).repeat(2, 1)   # [2, 29] = block size
    x[1] = torch.from_numpy(m.tokenize(ds)[12:18].reshape(-1)[:-1])
    with torch.no_grad():
        full = m(x).logits
        out = m(x[:, :7], use_cache=True)
        parts, cache = [out.logits], out.past_key_values
        for i in range(7, x.shape[1]):
            out = m(x[:, i:i + 1], past_key_values=cache, use_cache=True)
            parts.append(out.logits)
            cache = out.past_key_values
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)
    with pytest.raises(ValueError, match="window"):
        m(torch.zeros(1, m.block_size + 1, dtype=torch.long))


@pytest.mark.parametrize("options", [{}, {"obs_decoding": "sample", "value_decoding": "argmax", "action_cdf": None},
                                     {"action_proposal": "uniform"}, {"value_decoding": "quantile", "value_quantile": 0.75}])
def test_beam_search_same_plans_with_and_without_cache(options):
    ds = ramp_dataset()
    m = make_model(ds, K=6)
    tok = m.tokenize(ds)
    prefix = np.stack([np.r_[tok[0:2].ravel(), tok[2, :2]], np.r_[tok[14:16].ravel(), tok[16, :2]]])   # 2 envs
    kw = dict(horizon=4, beam_width=6, n_expand=3, **options)
    fast = m.plan_tokens(prefix, generator=torch.Generator().manual_seed(3), use_cache=True, **kw)
    slow = m.plan_tokens(prefix, generator=torch.Generator().manual_seed(3), use_cache=False, **kw)
    for a, b in zip(fast, slow):
        assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.first_action, b.first_action)
        assert a.score == pytest.approx(b.score, abs=1e-4)
        assert a.tokens.shape == (4, m.D) and a.observations.shape == (4, 2) and a.values.shape == (4,)
        assert -1.0 <= a.first_action[0] <= 1.0
    assert not np.array_equal(fast[0].tokens, fast[1].tokens)


def test_action_cdf_filter():
    probs = torch.tensor([[0.2, 0.5, 0.3]])
    keep = lambda cdf: (TrajectoryTransformer._filter_cdf(probs, cdf) > 0).int().tolist()   # noqa: E731
    assert keep(0.6) == [[0, 1, 0]] and keep(0.3) == [[0, 1, 1]] and keep(0.0) == [[1, 1, 1]] and keep(1.0) == [[0, 1, 0]]


def test_value_decodings_known_answers():
    """A bimodal value ("held" near 0 w.p. 0.7, "falls" at -100 w.p. 0.3): the mean is -30.9, the upper
    quantiles pick the held mode, the lower ones the fall; rewards keep the mean under "quantile"."""
    m = make_model(ramp_dataset(), K=4)
    dim = m.D - 1
    centres = m.centres[dim]
    probs = torch.zeros(2, m.N)
    probs[:, 0], probs[:, -1] = 0.3, 0.7            # bins at the lowest and the highest value
    probs[1] *= 2.0                                  # unnormalised rows give the same quantiles
    lo, hi = float(centres[0]), float(centres[-1])
    assert m._expect(probs[:1], dim, "mean").item() == pytest.approx(0.3 * lo + 0.7 * hi, rel=1e-5)
    assert m._expect(probs, dim, "argmax").tolist() == [hi, hi]
    assert m._expect(probs, dim, "quantile", 0.9).tolist() == [hi, hi]
    assert m._expect(probs, dim, "quantile", 0.3).tolist() == [lo, lo]        # P(V <= lo) = 0.3 reaches 0.3
    assert m._expect(probs, dim, "quantile", 0.31).tolist() == [hi, hi]
    assert m._expect(probs, dim, "quantile", 1.0).tolist() == [hi, hi]
    with pytest.raises(ValueError, match="value_quantile"):
        m._expect(probs, dim, "quantile", 0.0)
    with pytest.raises(ValueError, match="quantile"):
        m._expect(probs, dim, "median")
    assert m.plan(ramp_dataset().observations[:1], horizon=2, beam_width=2, value_decoding="quantile").tokens.shape == (2, m.D)


def test_plan_checks_its_horizon_and_options():
    ds = ramp_dataset()
    m = make_model(ds, K=4)
    obs = ds.observations[:1]
    assert m.plan(obs, horizon=4, beam_width=2).tokens.shape == (4, m.D)     # the cap: K transitions
    with pytest.raises(ValueError, match="cap"):
        m.plan(obs, horizon=5)
    with pytest.raises(ValueError, match="unknown planning option"):
        m.plan(obs, beam_widht=3)


def test_rollout_plans_from_recent_context():
    ds = ramp_dataset()
    m = make_model(ds, K=4, horizon=2, beam_width=3)
    r = m.start_rollout(2, seed=0)
    for t in range(5):   # past K - H = 2 transitions the context is cropped
        a = r.act(ds.observations[[t, L + t]])
        assert a.shape == (2, 1) and a.dtype == np.float32 and (np.abs(a) <= 1).all()
        r.observe(np.zeros(2))
    r.act(ds.observations[[0, 1]])
    with pytest.raises(RuntimeError, match="observe"):
        r.act(ds.observations[[0, 1]])


# ---- training windows, loss, attentions, card ----------------------------------------------------------
def test_windows_are_whole_transitions_within_an_episode():
    ds = ramp_dataset()
    m = make_model(ds, K=4)
    b = m.sample_batch(training_data(ds), 64, np.random.default_rng(0))
    win = torch.cat([b["inputs"], b["targets"][:, -1:]], dim=1).numpy().reshape(64, 4, m.D)
    real = win[:, :, 0] != m.pad_token
    assert real[:, 0].all()
    steps = np.where(real, np.rint(m.discretizer.decode(np.where(real, win[:, :, 0], 0)) * (L - 1)), np.nan)
    assert np.allclose(np.diff(steps, axis=1)[real[:, 1:]], 1.0)                  # consecutive steps
    assert (win[~real] == m.pad_token).all()                                     # truncated: pads, no stop
    first = np.nanmin(steps, axis=1)
    assert np.array_equal(real.sum(axis=1), np.minimum(4, L - first))           # cut only at the episode end


def test_discrete_actions_and_stop_tokens(tiny_discrete):
    """Episodes 0 and 2 terminate (windows past their end hold stop tokens, which are trained on),
    episode 1 is truncated (pads, left out of the loss); discrete actions act as ints."""
    ds = tiny_discrete
    cfg = AgentConfig(kind="tt", obs_dim=2, act_dim=1, discrete=True, n_actions=2, context_length=3,
                      hparams={"n_bins": 9, "hidden": 16, "n_layer": 1, "n_head": 2, "horizon": 2, "beam_width": 2})
    m = TrajectoryTransformer.for_dataset(cfg, ds)
    assert m.discretizer.centres[2, :2].tolist() == [0.0, 1.0]                 # action bins are the actions
    b = m.sample_batch(training_data(ds), 200, np.random.default_rng(0))
    win = torch.cat([b["inputs"], b["targets"][:, -1:]], dim=1).numpy().reshape(200, 3, m.D)
    first_step = np.rint(m.discretizer.decode(win[:, 0, 0]) * 2).astype(int)   # obs0 = step / 2
    episode = np.searchsorted(ds.episode_starts, first_step, side="right") - 1
    filled = win[:, -1, 0] >= m.stop_token
    assert filled.any() and (win[filled, -1, 0] == np.where(episode[filled] == 1, m.pad_token, m.stop_token)).all()
    assert np.isfinite(m.loss(b)[0].item())
    r = m.start_rollout(2, seed=1)
    for t in range(3):
        a = r.act(ds.observations[[t, 3 + t]])
        assert a.dtype == np.int64 and a.shape == (2,) and set(a.tolist()) <= {0, 1}
        r.observe(np.ones(2))


def test_action_tokens_left_out_of_the_loss():
    ds = ramp_dataset()
    batch = None
    for weight in (0.0, 1.0):
        m = make_model(ds, action_weight=weight)
        if batch is None:
            batch = m.sample_batch(training_data(ds), 16, np.random.default_rng(0))
        loss, info = m.loss(batch)
        loss.backward()
        act = m.obs_dim
        grad_act = m.head_w.grad[act].abs().sum() + m.head_b.grad[act].abs().sum()
        y = batch["targets"]
        is_act = (y >= act * m.N) & (y < (act + 1) * m.N)
        flipped = dict(batch, targets=torch.where(is_act, act * m.N + (y - act * m.N + 1) % m.N, y))   # other action bins
        changed = m.loss(flipped)[0].item() != pytest.approx(loss.item(), abs=1e-6)
        assert (grad_act == 0) == (weight == 0) and changed == (weight != 0)
        assert info["ce_act"] > 0
    assert m.start_rollout(1).options["action_proposal"] == "model"
    assert make_model(ds, action_weight=0.0).start_rollout(1).options["action_proposal"] == "uniform"


def test_attention_shapes():
    ds = ramp_dataset()
    m = make_model(ds, K=4).eval()
    x = torch.from_numpy(m.tokenize(ds)[:3].reshape(1, -1)).repeat(3, 1)            # [3, 15]
    out = m(x, output_attentions=True, use_cache=True)
    assert out.logits.shape == (3, 15, L + 1)
    assert len(out.attentions) == 2 and all(a.shape == (3, 2, 15, 15) for a in out.attentions)
    att = out.attentions[0]
    assert torch.allclose(att.sum(-1), torch.ones(3, 2, 15)) and (att.triu(1) == 0).all()
    step = m(x[:, :1], past_key_values=out.past_key_values, use_cache=True, output_attentions=True)
    assert step.attentions[1].shape == (3, 2, 1, 16) and step.past_key_values[0][0].shape == (3, 2, 16, 16)


def test_card_and_config_errors():
    ds = ramp_dataset()
    m = make_model(ds, K=5)
    card = m.card()
    assert card["n_bins"] == L and card["tokens_per_transition"] == 5 and card["horizon_cap"] == 5
    assert card["obs_quantization_floor"] == pytest.approx(0.0, abs=1e-6)
    cfg = AgentConfig(kind="tt", obs_dim=2, act_dim=1, discrete=False, context_length=4)
    with pytest.raises(ValueError, match="for_dataset"):
        TrajectoryTransformer(cfg)
    with pytest.raises(ValueError, match="obs_dim"):
        TrajectoryTransformer.for_dataset(AgentConfig(kind="tt", obs_dim=3, act_dim=1, discrete=False), ds)
    rebuilt = TrajectoryTransformer(AgentConfig.from_dict(json.loads(json.dumps(m.config.to_dict()))))
    rebuilt.load_state_dict(m.state_dict())
    x = torch.from_numpy(m.tokenize(ds)[:2].reshape(1, -1))
    assert torch.equal(rebuilt.eval()(x).logits, m.eval()(x).logits)
