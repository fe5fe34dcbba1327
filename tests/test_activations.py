"""Named activations (models/activations.py): run_with_cache gives the plain forward's outputs bit for bit,
the cached pieces add up to the residual stream, interventions act for one call only (no hooks, no
module state, thread-safe), and every agent answers has(capability)."""
import threading

import numpy as np
import pytest
import torch

from models.activations import ActivationRun, match_names
from models.base import AgentConfig
from models.baselines import DynamicsModel, GRUPolicy, MLPPolicy
from models.decision_transformer import DecisionTransformer
from models.trajectory_transformer import TrajectoryTransformer
from trajectories import Dataset


def spread(model, scale=0.3, seed=0):
    """GPT-2 init is nearly uniform: spread every weight so outputs depend on the inputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def make_dt(banded=True, n_head=2, K=4, **hp):
    torch.manual_seed(0)
    cfg = AgentConfig(kind="dt", obs_dim=3, act_dim=1, discrete=True, n_actions=3, context_length=K, max_ep_len=100,
                      rtg_scale=10.0, hparams={"hidden": 32, "n_layer": 3, "n_head": n_head, "banded": banded, **hp})
    return spread(DecisionTransformer(cfg))


def dt_inputs(model, B=4, L=6, seed=0, pad=True):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, L, dtype=torch.long)
    if pad:
        mask[0, :3] = 0
        mask[1, :1] = 0
    return {"states": torch.randn(B, L, model.obs_dim, generator=g),
            "actions": torch.nn.functional.one_hot(torch.randint(0, 3, (B, L), generator=g), 3).float(),
            "returns_to_go": torch.randn(B, L, 1, generator=g),
            "timesteps": torch.randint(0, 100, (B, L), generator=g), "attention_mask": mask}


@pytest.fixture(scope="module")
def hf_dt(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    from models.hf_import import load_hf_decision_transformer

    torch.manual_seed(0)
    cfg = transformers.DecisionTransformerConfig(state_dim=3, act_dim=2, hidden_size=32, n_layer=2, n_head=2,
                                                 max_ep_len=50, action_tanh=True, attn_implementation="eager")
    hf = transformers.DecisionTransformerModel(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    path = tmp_path_factory.mktemp("hf_dt")
    hf.save_pretrained(path)
    return load_hf_decision_transformer(path, context_length=8, rtg_scale=10.0).eval()


def hf_inputs(model, B=3, L=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, L, dtype=torch.long)
    mask[0, :2] = 0
    return {"states": torch.randn(B, L, 3, generator=g), "actions": torch.rand(B, L, 2, generator=g) * 2 - 1,
            "returns_to_go": torch.randn(B, L, 1, generator=g), "timesteps": torch.randint(0, 50, (B, L), generator=g),
            "attention_mask": mask}


def make_tt():
    rng = np.random.default_rng(0)
    n = 60
    ds = Dataset(rng.normal(size=(n, 2)).astype(np.float32), rng.uniform(-1, 1, (n, 1)).astype(np.float32),
                 rng.normal(size=n).astype(np.float32), np.zeros(n, bool), np.eye(1, n, n - 1, dtype=bool)[0],
                 np.array([0, 30]), source="tt")
    torch.manual_seed(0)
    cfg = AgentConfig(kind="tt", obs_dim=2, act_dim=1, discrete=False, context_length=4,
                      hparams={"n_bins": 8, "hidden": 16, "n_layer": 2, "n_head": 2})
    m = spread(TrajectoryTransformer.for_dataset(cfg, ds), 0.2)
    return m, torch.as_tensor(m.tokenize(ds)[:16].reshape(4, 20)[:, :-1])


def make_mlp():
    torch.manual_seed(0)
    return spread(MLPPolicy(AgentConfig(kind="mlp", obs_dim=3, act_dim=1, discrete=True, n_actions=3,
                                        hparams={"hidden": 16, "n_layer": 2})))


def make_gru():
    torch.manual_seed(0)
    return spread(GRUPolicy(AgentConfig(kind="gru", obs_dim=3, act_dim=1, discrete=True, n_actions=3,
                                        hparams={"hidden": 8})))


def make_dynamics():
    torch.manual_seed(0)
    return spread(DynamicsModel(AgentConfig(kind="dynamics", obs_dim=3, act_dim=2, discrete=False,
                                            hparams={"hidden": 16, "n_layer": 3})))


def gru_inputs(gru, B=2, T=7):
    g = torch.Generator().manual_seed(2)
    return (torch.randn(B, T, 3, generator=g), gru.prev_actions(torch.randint(0, 3, (B, T), generator=g)))


def assert_same(a, b):
    """Bit-equal outputs (DTOutput / TTOutput fields, tuples, tensors)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif a is None:
        assert b is None
    else:
        for k in vars(a):
            assert_same(getattr(a, k), getattr(b, k))


# ---- outputs equal the plain forward, bit for bit ------------------------------------------------------------
@torch.no_grad()
def test_dt_outputs_equal_forward_native_and_hf_style():
    for model in (make_dt(), make_dt(banded=False, hf_wpe=True, scale_attn_by_inverse_layer_idx=True)):
        inp = dt_inputs(model)
        ref = model(**inp, output_attentions=True, output_hidden_states=True)
        out, cache = model.run_with_cache({**inp, "output_attentions": True, "output_hidden_states": True})
        assert_same(out, ref)
        assert list(cache) == model.activation_names()            # names=None: all, in the forward's order
        for i in range(3):
            assert torch.equal(cache[f"blocks.{i}.resid_post"], ref.hidden_states[i])
            assert torch.equal(cache[f"blocks.{i}.attn.pattern"], ref.attentions[i])
        assert torch.equal(cache["head.action"], ref.action_preds) and torch.equal(cache["head.value"], ref.value_preds)
        B, L = inp["states"].shape[:2]
        assert cache["blocks.1.attn.head_out"].shape == (B, 3 * L, 2, 32) and cache["ln_final.scale"].shape == (B, 3 * L, 1)
        assert cache["embed.s"].shape == (B, L, 32) and cache["blocks.0.attn.pattern"].shape == (B, 2, 3 * L, 3 * L)


@torch.no_grad()
def test_dt_hf_import_outputs_equal_forward(hf_dt):
    inp = hf_inputs(hf_dt)
    ref = hf_dt(**inp)
    out, cache = hf_dt.run_with_cache(inp, ["blocks.*.resid_post", "head.action"])
    assert_same(out, ref)
    assert list(cache) == ["blocks.0.resid_post", "blocks.1.resid_post", "head.action"]
    assert torch.equal(cache["head.action"], ref.action_preds)


@torch.no_grad()
def test_tt_mlp_gru_dynamics_outputs_equal_forward():
    tt, tokens = make_tt()
    out, cache = tt.run_with_cache(tokens)
    assert_same(out, tt(tokens))
    assert torch.equal(cache["head.logits"], out.logits) and torch.equal(cache["ln_final.out"], tt.final_hidden(tokens))
    assert cache["blocks.1.attn.pattern"].shape == (4, 2, 19, 19) and cache["embed.tokens"].shape == (4, 19, 16)
    # with a KV cache: the new token's activations against the cached keys
    first = tt(tokens[:, :10], use_cache=True)
    out, cache = tt.run_with_cache({"tokens": tokens[:, 10:12], "past_key_values": first.past_key_values})
    assert_same(out, tt(tokens[:, 10:12], past_key_values=first.past_key_values))
    assert cache["blocks.0.attn.pattern"].shape == (4, 2, 2, 12)

    mlp = make_mlp()
    obs = torch.randn(5, 3)
    out, cache = mlp.run_with_cache(obs)
    assert torch.equal(out, mlp(obs)) and list(cache) == ["hidden.0", "hidden.1", "head.out"]

    gru = make_gru()
    inp = gru_inputs(gru)
    (y, h), cache = gru.run_with_cache(inp)
    y0, h0 = gru(*inp)
    assert torch.equal(y, y0) and torch.equal(h, h0) and list(cache) == ["gru.input", "gru.hidden", "head.out"]
    assert torch.equal(cache["gru.hidden"][:, -1], h0[-1])        # the state after the last step

    dyn = make_dynamics()
    obs, acts = torch.randn(6, 3), torch.rand(6, 2) * 2 - 1
    (s1, r1), cache = dyn.run_with_cache((obs, acts))
    s0, r0 = dyn(obs, acts)
    assert torch.equal(s1, s0) and torch.equal(r1, r0)
    assert list(cache) == ["hidden.0", "hidden.1", "hidden.2", "head.out"]
    assert torch.equal(cache["head.out"][:, -1], r0 / dyn.reward_scale)


@torch.no_grad()
def test_baseline_hidden_layers_are_the_documented_tensors():
    mlp = make_mlp()
    obs = torch.tensor([[0.5, -1.0, 2.0]])
    _, cache = mlp.run_with_cache(obs, "hidden.*")
    l0, l1, l2 = (m for m in mlp.net if isinstance(m, torch.nn.Linear))
    h0 = torch.clamp(obs @ l0.weight.T + l0.bias, min=0)
    h1 = torch.clamp(h0 @ l1.weight.T + l1.bias, min=0)
    np.testing.assert_allclose(cache["hidden.0"].numpy(), h0.numpy(), atol=1e-6)
    np.testing.assert_allclose(cache["hidden.1"].numpy(), h1.numpy(), atol=1e-6)
    np.testing.assert_allclose(mlp(obs).numpy(), (h1 @ l2.weight.T + l2.bias).numpy(), atol=1e-5)


# ---- the pieces add up ----------------------------------------------------------------------------------------
@torch.no_grad()
@pytest.mark.parametrize("which", ["dt", "dt_hf_style", "tt"])
def test_residual_stream_decomposes(which):
    if which == "tt":
        model, inp = make_tt()
    else:
        model = make_dt() if which == "dt" else make_dt(banded=False, hf_wpe=True)
        inp = dt_inputs(model)
        inp = {k: v.double() if v.is_floating_point() else v for k, v in inp.items()}
    blocks, ln = model.blocks, model.ln_final
    model.double()          # float64, so the 1e-6 below checks the algebra, not float32 rounding (~4e-7 relative)
    _, c = model.run_with_cache(inp)
    for i, block in enumerate(blocks):
        p = f"blocks.{i}."
        attn = c[p + "resid_mid"] - c[p + "resid_pre"]
        np.testing.assert_allclose((c[p + "attn.head_out"].sum(2) + block.attn.b_O).numpy(), c[p + "attn.out"].numpy(), atol=1e-6)
        np.testing.assert_allclose(attn.numpy(), c[p + "attn.out"].numpy(), atol=1e-6)
        np.testing.assert_allclose((c[p + "resid_mid"] + c[p + "mlp.out"]).numpy(), c[p + "resid_post"].numpy(), atol=1e-6)
        if i + 1 < len(blocks):
            assert torch.equal(c[p + "resid_post"], c[f"blocks.{i + 1}.resid_pre"])
    x = c[f"blocks.{len(blocks) - 1}.resid_post"]
    frozen = (x - x.mean(-1, keepdim=True)) * c["ln_final.scale"] * ln.weight + ln.bias
    np.testing.assert_allclose(frozen.numpy(), c["ln_final.out"].numpy(), atol=1e-6)
    np.testing.assert_allclose(c["ln_final.scale"][..., 0].numpy(), (1 / torch.sqrt(x.var(-1, unbiased=False) + ln.eps)).numpy(),
                               rtol=1e-6)


@torch.no_grad()
def test_dt_embeddings_and_heads():
    model = make_dt()
    inp = dt_inputs(model)
    _, c = model.run_with_cache(inp, ["embed.*", "blocks.0.resid_pre", "ln_final.out", "head.*"])
    B, L = inp["states"].shape[:2]
    t = model.embed_timestep.weight[inp["timesteps"]]
    np.testing.assert_allclose(c["embed.s"].numpy(), (inp["states"] @ model.embed_state.weight.T + model.embed_state.bias + t).numpy(),
                               atol=1e-5)
    tokens = torch.stack([c["embed.R"], c["embed.s"], c["embed.a"]], 2).reshape(B, 3 * L, -1)
    np.testing.assert_allclose(model.embed_ln(tokens).numpy(), c["blocks.0.resid_pre"].numpy(), atol=1e-6)
    h = c["ln_final.out"].reshape(B, L, 3, -1)
    np.testing.assert_allclose(c["head.return"].numpy(), model.predict_return(h[:, :, 2]).numpy(), atol=1e-6)
    np.testing.assert_allclose(c["head.state"].numpy(), model.predict_state(h[:, :, 2]).numpy(), atol=1e-6)


@torch.no_grad()
def test_dt_last_state_only_equals_the_full_forward():
    for model in (make_dt().double(), make_dt(banded=False).double()):   # float64: the skipped work, not rounding
        inp = {k: v.double() if v.is_floating_point() else v for k, v in dt_inputs(model, L=7).items()}
        full, c = model.run_with_cache(inp)
        out, s = model.run_with_cache(inp, ["blocks.*.resid_post", "blocks.2.attn.pattern", "ln_final.out", "head.action",
                                            "head.value"], last_state_only=True)
        q = 3 * 7 - 2                                          # the last step's s_t token
        np.testing.assert_allclose(s["blocks.2.resid_post"][:, 0].numpy(), c["blocks.2.resid_post"][:, q].numpy(), atol=1e-6)
        # earlier blocks: every token up to s_t (causal: the same values as in the full forward)
        np.testing.assert_allclose(s["blocks.1.resid_post"].numpy(), c["blocks.1.resid_post"][:, :q + 1].numpy(), atol=1e-6)
        np.testing.assert_allclose(s["blocks.2.attn.pattern"][:, :, 0].numpy(), c["blocks.2.attn.pattern"][:, :, q, :q + 1].numpy(),
                                   atol=1e-6)
        np.testing.assert_allclose(out.action_preds[:, 0].numpy(), full.action_preds[:, -1].numpy(), atol=1e-5)
        np.testing.assert_allclose(out.value_preds[:, 0].numpy(), full.value_preds[:, -1].numpy(), atol=1e-5)
        assert out.return_preds is None
        # an intervention before the last block reaches that token as in the full forward
        fn = {"blocks.0.resid_post": lambda h: h * 0.5}
        full_i, _ = model.run_with_cache(inp, [], fn)
        out_i, _ = model.run_with_cache(inp, [], fn, last_state_only=True)
        np.testing.assert_allclose(out_i.action_preds[:, 0].numpy(), full_i.action_preds[:, -1].numpy(), atol=1e-6)
        assert not np.allclose(out_i.action_preds.numpy(), out.action_preds.numpy())
    with pytest.raises(ValueError, match="a_t token"):
        model.run_with_cache(inp, ["head.return"], last_state_only=True)


# ---- interventions ---------------------------------------------------------------------------------------------
def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def test_interventions_act_for_one_call_and_leave_the_module_alone():
    model = make_dt(n_head=2)
    inp = dt_inputs(model, B=8, pad=False)
    before = _state(model)
    ref = model(**inp)
    zero = {"blocks.2.attn.head_out": lambda h: torch.zeros_like(h)}
    out, c = model.run_with_cache(inp, ["blocks.2.attn.out", "blocks.2.attn.head_out"], interventions=zero)
    assert not torch.equal(out.action_preds, ref.action_preds)
    assert (out.action_preds.argmax(-1) != ref.action_preds.argmax(-1)).any()      # some action changes
    assert torch.equal(c["blocks.2.attn.head_out"], torch.zeros(8, 18, 2, 32))     # the cache holds what was used
    np.testing.assert_allclose(c["blocks.2.attn.out"].numpy(), model.encoder["h"][2].attn.c_proj.bias.expand(8, 18, 32).numpy(),
                               atol=1e-5)
    # one head only, index_fill as in the docs; and a glob over every block
    one, _ = model.run_with_cache(inp, [], {"blocks.2.attn.head_out": lambda h: h.index_fill(2, torch.tensor([0]), 0.0)})
    assert not torch.equal(one.action_preds, ref.action_preds) and not torch.equal(one.action_preds, out.action_preds)
    # identity interventions (same object, or an equal copy) change nothing, bit for bit
    for fn in (lambda h: h, lambda h: h.clone()):
        same, _ = model.run_with_cache(inp, [], {n: fn for n in ("blocks.*.attn.head_out", "blocks.*.attn.pattern", "embed.*",
                                                                  "blocks.*.resid_*", "ln_final.*", "head.*")})
        assert_same(same, ref)
    # the module is untouched: parameters, buffers, no hooks; and the next plain call is the plain forward
    after = _state(model)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert_same(model(**inp), ref)


@torch.no_grad()
def test_patching_a_stored_activation_and_other_agents():
    model = make_dt()
    a, b = dt_inputs(model, seed=0, pad=False), dt_inputs(model, seed=1, pad=False)
    out_b, cb = model.run_with_cache(b, ["blocks.1.resid_post"])
    stored = cb["blocks.1.resid_post"]
    # patch run b's whole residual stream after block 1 into run a: a's outputs become b's
    patched, _ = model.run_with_cache(a, [], {"blocks.1.resid_post": lambda h: stored})
    np.testing.assert_allclose(patched.action_preds.numpy(), out_b.action_preds.numpy(), atol=1e-6)
    # TT: zero a head; GRU: steer the head's input; MLP / dynamics: a hidden layer
    tt, tokens = make_tt()
    ref = tt(tokens).logits
    z, _ = tt.run_with_cache(tokens, [], {"blocks.1.attn.head_out": lambda h: h * 0})
    assert not torch.equal(z.logits, ref)
    same, _ = tt.run_with_cache(tokens, [], {"blocks.*.attn.head_out": lambda h: h.clone(), "ln_final.scale": lambda s: s.clone()})
    assert torch.equal(same.logits, ref)
    gru = make_gru()
    inp = gru_inputs(gru)
    (y, _), _ = gru.run_with_cache(inp, [], {"gru.hidden": torch.zeros_like})
    np.testing.assert_allclose(y.numpy(), gru.head.bias.expand_as(y).numpy(), atol=1e-6)
    mlp = make_mlp()
    obs = torch.randn(4, 3)
    y, _ = mlp.run_with_cache(obs, [], {"hidden.1": torch.zeros_like})
    np.testing.assert_allclose(y.numpy(), mlp.net[-1].bias.expand(4, 3).numpy(), atol=1e-6)
    dyn = make_dynamics()
    (s, r), _ = dyn.run_with_cache((torch.zeros(2, 3), torch.zeros(2, 2)), [], {"head.out": torch.zeros_like})
    assert torch.equal(s, torch.zeros(2, 3)) and torch.equal(r, torch.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        mlp.run_with_cache(obs, [], {"hidden.0": lambda h: h[:, :2]})


def test_two_threads_with_different_interventions_equal_serial():
    model = make_dt()
    inp = dt_inputs(model, B=16, L=8, pad=False)
    plans = [{"blocks.2.attn.head_out": lambda h: h.index_fill(2, torch.tensor([k % 2]), 0.0),
              "blocks.0.resid_post": (lambda h: h * 1.5) if k % 3 else (lambda h: h)} for k in range(6)]
    names = ["blocks.2.resid_post", "head.action"]
    with torch.no_grad():
        serial = [model.run_with_cache(inp, names, p) for p in plans]
    results, errors = {}, []

    def work(ks):
        try:
            with torch.no_grad():
                for _ in range(3):
                    for k in ks:
                        results[k] = model.run_with_cache(inp, names, plans[k])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(ks,)) for ks in ([0, 2, 4], [1, 3, 5])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k, (out, cache) in enumerate(serial):
        assert_same(results[k][0], out)
        assert all(torch.equal(results[k][1][n], cache[n]) for n in names)
    assert not torch.equal(serial[0][0].action_preds, serial[1][0].action_preds)


# ---- names and capabilities -------------------------------------------------------------------------------------
def test_name_matching():
    names = ["embed.R", "blocks.0.resid_pre", "blocks.0.attn.pattern", "blocks.1.attn.pattern", "head.action"]
    assert match_names(None, names) == names
    assert match_names("blocks.*.attn.pattern", names) == ["blocks.0.attn.pattern", "blocks.1.attn.pattern"]
    assert match_names(["head.action", "embed.R"], names) == ["embed.R", "head.action"]   # the forward's order
    with pytest.raises(ValueError, match="no activation named 'blocks.2.resid_pre'"):
        match_names(["blocks.2.resid_pre"], names)
    with pytest.raises(ValueError, match="no activation named"):
        ActivationRun(names, [], {"blocks.*.mlp.out": lambda h: h})
    run = ActivationRun(names, ["embed.R"], {"blocks.*.attn.pattern": lambda h: h * 2})
    assert run.wants("blocks.1.attn.pattern") and run.wants("embed.R") and not run.wants("head.action")
    assert torch.equal(run("blocks.0.attn.pattern", torch.ones(2)), torch.full((2,), 2.0)) and run.cache == {}


def test_capabilities():
    tt, _ = make_tt()
    from models.continuous_q import ContinuousQ
    cq = ContinuousQ(AgentConfig(kind="cq", obs_dim=3, act_dim=1, discrete=False, hparams={"hidden": 16}))
    agents = {"dt": make_dt(), "tt": tt, "mlp": make_mlp(), "gru": make_gru(), "dynamics": make_dynamics(), "cq": cq}
    table = {c: sorted(k for k, a in agents.items() if a.has(c)) for c in
             ("action", "return", "value", "state", "attention", "kv_cache", "planning", "dynamics", "recurrent", "acts",
              "tokens", "return_conditioned", "step_tokens", "markov", "partial_forward", "q_values")}
    assert table == {"action": ["dt", "gru", "mlp"], "return": ["dt"], "value": ["dt", "tt"],
                     "state": ["dt", "dynamics", "tt"], "attention": ["dt", "tt"], "kv_cache": ["dt", "tt"],
                     "planning": ["tt"], "dynamics": ["dynamics", "tt"], "recurrent": ["gru"],
                     "acts": ["cq", "dt", "gru", "mlp", "tt"], "tokens": ["tt"], "return_conditioned": ["dt"],
                     "step_tokens": ["dt"], "markov": ["cq", "mlp"], "partial_forward": ["dt"], "q_values": ["cq"]}
    from models.base import CAPABILITIES
    assert set(table) == set(CAPABILITIES)
    with pytest.raises(ValueError, match="unknown capability"):
        agents["dt"].has("memory")
