"""Ablation of a Decision Transformer (analysis/interp/ablation.py) and interventions in its rollout (DTRollout):
known answers — no intervention is the plain path, mean-ablating a head whose output is constant changes
nothing, zeroing a head that matters changes the outputs, the KV-cached rollout with an ablation equals its
full-recompute twin, the environment effect has CIs and is reproducible by seed — and one sentence for bad input."""
import numpy as np
import pytest
import torch

from analysis.publish import catalog
from analysis.interp.ablation import ablation, ablation_in_env, ablation_on_data, action_outputs, data_steps, default_ablation
from analysis.interp.components import Component, ablation_interventions, ablation_means, parse_ablation
from analysis.behaviour.context import context_accuracy
from analysis.core.inputs import last_step_outputs, receptive_field, step_windows, training_data
from models.base import AgentConfig
from models.decision_transformer import DecisionTransformer
from models.errors import AgentError
from models.rollout import episode_uniforms, run_episodes
from trajectories import Dataset


def random_dt(K=3, n_layer=2, n_head=2, seed=0, **hp) -> DecisionTransformer:
    """A CartPole-shaped DT whose weights are spread so its outputs depend on its inputs."""
    torch.manual_seed(seed)
    cfg = AgentConfig(kind="dt", obs_dim=4, act_dim=1, discrete=True, n_actions=2, context_length=K, max_ep_len=500,
                      rtg_scale=100.0, env_id="CartPole-v1", dataset={"return_max": 50.0},
                      hparams={"hidden": 16, "n_layer": n_layer, "n_head": n_head, **hp})
    dt = DecisionTransformer(cfg).eval()
    with torch.no_grad():
        for p in dt.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return dt


def constant_head(dt: DecisionTransformer, layer: int, head: int) -> DecisionTransformer:
    """Zero the value projection (weights and bias) of one head: its values are 0, so its head_out (which leaves
    the output projection's bias out) is exactly 0 at every token of every input."""
    attn = dt.encoder["h"][layer].attn
    C, hd = attn.hidden, attn.hidden // attn.n_head
    rows = slice(2 * C + head * hd, 2 * C + (head + 1) * hd)
    with torch.no_grad():
        attn.c_attn.weight[rows] = 0
        attn.c_attn.bias[rows] = 0
    return dt


@pytest.fixture(scope="module")
def data() -> Dataset:
    rng = np.random.default_rng(0)
    lengths = [40, 25, 60, 35]
    n = sum(lengths)
    ends = np.cumsum(lengths) - 1
    term = np.zeros(n, bool)
    term[ends] = True
    return Dataset(rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 2, n), np.ones(n, np.float32), term,
                   np.zeros(n, bool), np.concatenate([[0], np.cumsum(lengths)[:-1]]), env_id="CartPole-v1", source="made-up")


# ---- names ------------------------------------------------------------------------------------------------------
def test_parse_ablation_and_its_sentences():
    dt = random_dt(n_layer=3, n_head=2)
    assert parse_ablation(dt, ["L2MLP", "l0h1", "L2H*", "L0H1"]) == [Component(0, 1), Component(2, 0), Component(2, 1),
                                                                     Component(2, None)]
    assert [c.label for c in parse_ablation(dt, "L1H0, L1MLP")] == ["L1H0", "L1MLP"]
    assert parse_ablation(dt, ["L1H0"])[0].activation == "blocks.1.attn.head_out"
    assert parse_ablation(dt, ["L1MLP"])[0].activation == "blocks.1.mlp.out"
    assert default_ablation(dt) == ["L2H*"]
    for bad, match in (([], "choose at least one head or MLP"), ("", "choose at least one head or MLP"),
                       (None, "choose at least one head or MLP"), (["L3H0"], "there is no L3H0: this agent has layers L0-L2, "
                                                                             "heads H0-H1 in each and one MLP per layer"),
                       (["L0H2"], "there is no L0H2"), (["head 3"], "is not a head or an MLP")):
        with pytest.raises(ValueError, match=match) as e:
            parse_ablation(dt, bad)
        assert "\n" not in str(e.value) and str(e.value).endswith(".")
    with pytest.raises(ValueError, match="mode must be 'zero' or 'mean'"):
        ablation_interventions(dt, parse_ablation(dt, ["L0H0"]), "half")


# ---- on data ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def test_no_intervention_is_the_plain_path(data):
    dt = random_dt()
    steps = data_steps(data, 64, seed=1)
    inputs = step_windows(dt, training_data(dt, data), steps, context=receptive_field(dt))
    plain = last_step_outputs(dt, inputs).action_preds[:, -1]
    assert torch.equal(action_outputs(dt, inputs, {}), plain) and torch.equal(action_outputs(dt, inputs, None), plain)
    eff = ablation_on_data(dt, data, {}, n_steps=100, seed=3)
    assert eff.difference.mean == 0.0 and eff.changed == 0.0 and np.array_equal(eff.scores_intact, eff.scores_ablated)
    # the intact side is context_accuracy's number at the receptive field: the same steps, the same windows
    ref = context_accuracy(dt, data, contexts=[receptive_field(dt)], n_steps=100, seed=3)
    assert eff.intact.mean == ref.value[0] and (eff.intact.ci_low, eff.intact.ci_high) == (ref.ci_low[0], ref.ci_high[0])
    assert np.array_equal(eff.steps, data_steps(data, 100, 3))


@torch.no_grad()
def test_ablating_a_constant_head_changes_nothing_and_a_head_that_matters_does(data):
    dt = constant_head(random_dt(seed=4), layer=1, head=1)
    means = ablation_means(dt, data, n_windows=32, seed=0)
    assert set(means) == {"blocks.0.attn.head_out", "blocks.0.mlp.out", "blocks.1.attn.head_out", "blocks.1.mlp.out"}
    assert means["blocks.1.attn.head_out"].shape == (2, 16) and means["blocks.0.mlp.out"].shape == (16,)
    assert not means["blocks.1.attn.head_out"][1].any()                     # its output is 0 everywhere: mean 0
    assert np.abs(means["blocks.1.attn.head_out"][0]).max() > 1e-3          # the other head's is not
    for mode in ("mean", "zero"):
        res = ablation(dt, data, ["L1H1"], mode=mode, n_steps=150, seed=2)
        assert res.data.difference.mean == 0.0 and res.data.changed == 0.0
        assert np.array_equal(res.data.scores_intact, res.data.scores_ablated)
        assert res.components == ["L1H1"] and res.mode == mode
    steps = data_steps(data, 150, 2)
    inputs = step_windows(dt, training_data(dt, data), steps, context=receptive_field(dt))
    plain = action_outputs(dt, inputs)
    same = action_outputs(dt, inputs, ablation_interventions(dt, parse_ablation(dt, ["L1H1"]), "mean", means))
    assert torch.equal(same, plain)                                       # bit for bit
    # zeroing a head that matters (and an MLP) changes the outputs, and some chosen actions
    for ablate in (["L1H0"], ["L0MLP"], ["L0H*", "L1H*"]):
        for mode in ("zero", "mean"):
            out = action_outputs(dt, inputs, ablation_interventions(dt, parse_ablation(dt, ablate), mode, means))
            assert (out - plain).abs().max() > 1e-3, (ablate, mode)
    res = ablation(dt, data, ["L0H*", "L1H*"], n_steps=150, seed=2)
    assert res.data.changed > 0 and res.data.n_steps == 150
    d = res.data
    assert d.difference.mean == pytest.approx(d.ablated.mean - d.intact.mean)
    assert d.difference.ci_low <= d.difference.mean <= d.difference.ci_high
    # the mean replaces the whole component's output: every token of the ablated head carries the stored mean
    iv = ablation_interventions(dt, parse_ablation(dt, ["L0H0", "L0MLP"]), "mean", means)
    _, cache = dt.run_with_cache(inputs, ["blocks.0.attn.head_out", "blocks.0.mlp.out"], iv)
    head_mean = torch.as_tensor(means["blocks.0.attn.head_out"][0])
    assert torch.equal(cache["blocks.0.attn.head_out"][:, :, 0], head_mean.expand(150, 3 * 6, 16))
    assert torch.equal(cache["blocks.0.mlp.out"], torch.as_tensor(means["blocks.0.mlp.out"]).expand(150, 18, 16))


def test_means_are_over_real_tokens_seeded_and_cached(data):
    dt = random_dt(seed=5)
    a = ablation_means(dt, data, n_windows=16, seed=0)
    b = ablation_means(dt, data, n_windows=16, seed=0)
    c = ablation_means(dt, data, n_windows=16, seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["blocks.0.mlp.out"], c["blocks.0.mlp.out"])
    # by hand: every real (unpadded) token of the same 16 windows
    steps = data_steps(data, 16, 0)
    inputs = step_windows(dt, training_data(dt, data), steps, context=receptive_field(dt))
    with torch.no_grad():
        _, cache = dt.run_with_cache(inputs, ["blocks.1.mlp.out"])
    real = inputs["attention_mask"].bool().repeat_interleave(3, 1)
    assert not real.all()                                                 # some windows are left-padded
    np.testing.assert_allclose(a["blocks.1.mlp.out"], cache["blocks.1.mlp.out"][real].double().mean(0).numpy(), atol=1e-6)


# ---- in the rollout ---------------------------------------------------------------------------------------------
def test_rollout_identity_intervention_gives_the_same_episodes():
    dt = random_dt(seed=6)
    n = 3
    kw = dict(seed=2, uniforms=episode_uniforms(n, 500, seed=2), record=("observations", "actions", "rewards"))
    plain = run_episodes(dt, n, np.full(n, 50.0), **kw)
    for iv in ({}, {"blocks.*.attn.head_out": lambda h: h, "blocks.*.mlp.out": lambda h: h.clone(),
                    "blocks.*.resid_post": lambda h: h}):
        same = run_episodes(dt, n, np.full(n, 50.0), interventions=iv, **kw)
        for k in ("returns", "lengths", "observations", "actions", "rewards"):
            assert np.array_equal(getattr(same, k), getattr(plain, k)), k
    assert plain.lengths.max() > 2 * 3                                    # past the banded cache's slide (n_layer * K)


@pytest.mark.parametrize("banded", [True, False])
def test_rollout_ablation_cached_equals_the_recompute_twin(banded):
    dt = random_dt(seed=7, banded=banded)
    n = 3
    kw = dict(seed=3, uniforms=episode_uniforms(n, 500, seed=3), record=("actions",))
    zero = ablation_interventions(dt, parse_ablation(dt, ["L0H1"]), "zero")
    cached = run_episodes(dt, n, np.full(n, 50.0), interventions=zero, **kw)
    twin = run_episodes(dt, n, np.full(n, 50.0), interventions=zero, use_cache=False, **kw)
    assert np.array_equal(cached.actions, twin.actions) and np.array_equal(cached.returns, twin.returns)
    plain = run_episodes(dt, n, np.full(n, 50.0), **kw)
    assert not np.array_equal(plain.actions, cached.actions)               # the ablation acts in the rollout
    # the cached path's per-step outputs equal a recompute's, step by step (the cache holds the ablated keys)
    ro_c = dt.start_rollout(1, [50.0], seed=0, interventions=zero)
    ro_r = dt.start_rollout(1, [50.0], seed=0, interventions=zero, use_cache=False)
    rng = np.random.default_rng(0)
    for t in range(12):
        obs = rng.normal(size=(1, 4)).astype(np.float32)
        assert np.array_equal(ro_c.act(obs), ro_r.act(obs))
        ro_c.observe([1.0])
        ro_r.observe([1.0])
    with pytest.raises(ValueError, match="inside the blocks"):
        dt.start_rollout(1, [50.0], interventions={"head.action": lambda h: h})
    with pytest.raises(ValueError, match="no activation named"):
        dt.start_rollout(1, [50.0], interventions={"blocks.9.mlp.out": lambda h: h})


def test_rollout_interventions_need_a_decision_transformer():
    class NotDT:
        kind, discrete = "mlp", True
        config = AgentConfig(kind="mlp", obs_dim=4, act_dim=1, discrete=True, n_actions=2, env_id="CartPole-v1")

        def has(self, capability):
            from models.loading import capabilities_of
            return capability in capabilities_of(self.kind)
    with pytest.raises(AgentError, match="need a Decision Transformer"):
        run_episodes(NotDT(), 1, interventions={"blocks.0.mlp.out": lambda h: h})


def test_environment_effect_has_cis_and_is_reproducible_by_seed():
    dt = random_dt(seed=8)
    zero = ablation_interventions(dt, parse_ablation(dt, ["L0MLP", "L1MLP"]), "zero")
    a = ablation_in_env(dt, zero, episodes=4, target_return=50.0, seed=5)
    b = ablation_in_env(dt, zero, episodes=4, target_return=50.0, seed=5)
    assert np.array_equal(a.returns_intact, b.returns_intact) and np.array_equal(a.returns_ablated, b.returns_ablated)
    for e in (a.intact, a.ablated, a.difference):
        assert e.ci_low <= e.mean <= e.ci_high and e.n == 4
    assert a.difference.mean == pytest.approx((a.returns_ablated - a.returns_intact).mean())
    assert a.episodes == 4 and a.env_id == "CartPole-v1" and a.target_return == 50.0
    # the intact side is the plain rollout on the same seeds and draws
    plain = run_episodes(dt, 4, np.full(4, 50.0), seed=5, uniforms=episode_uniforms(4, 501, 5))
    assert np.array_equal(plain.returns, a.returns_intact)
    assert not np.array_equal(a.returns_intact, a.returns_ablated)
    # nothing ablated: no difference at all
    none = ablation_in_env(dt, {}, episodes=4, target_return=50.0, seed=5)
    assert np.array_equal(none.returns_intact, none.returns_ablated) and none.difference.mean == 0.0
    with pytest.raises(ValueError, match="episodes must be at least 1"):
        ablation_in_env(dt, zero, episodes=0)


# ---- the catalog entry ------------------------------------------------------------------------------------------
def test_catalog_entry(data):
    dt = random_dt(seed=9)
    f = catalog.make("ablation", dt, data, n_steps=80, mode="mean")
    assert f.name == "ablation" and f.params["ablate"] == ["L1H0", "L1H1"] and f.params["episodes"] == 0
    assert list(f.data["condition"]) == ["intact", "ablated", "ablated - intact"]
    assert set(f.data["measure"]) == {"action accuracy"} and (f.data["n"] == 80).all()
    f = catalog.make("ablation", dt, data, ablate="L0H1", n_steps=40, episodes=2, target_return=50.0)
    assert f.params["ablate"] == ["L0H1"] and list(f.data["measure"]).count("return") == 3
    assert len(f.figure.data) == 4                                        # intact / ablated bars in two panels
    for empty in ([], ""):
        with pytest.raises(ValueError, match="choose at least one head or MLP"):
            catalog.make("ablation", dt, data, ablate=empty)
