"""Decision Transformer: equality with HF's DecisionTransformerModel, KV cache == exact recompute, learning a
known answer, timestep clipping, padding without NaN, and a value head that never sees the return-to-go."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from models.base import AgentConfig
from models.decision_transformer import DecisionTransformer
from models.hf_import import load_hf_decision_transformer
from models.windows import TrainingData, gather_windows
from conftest import fit
from trajectories import Dataset


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models on 2 shared cores: OpenMP threads spin against other processes and run ~100x slower.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_dt(discrete=True, K=4, n_layer=3, hidden=32, n_head=2, obs_dim=3, act_dim=2, n_actions=3, seed=0, **hp):
    torch.manual_seed(seed)
    cfg = AgentConfig(kind="dt", obs_dim=obs_dim, act_dim=1 if discrete else act_dim, discrete=discrete,
                      n_actions=n_actions if discrete else None, context_length=K, max_ep_len=100, rtg_scale=10.0,
                      action_low=None if discrete else [-2.0] * act_dim, action_high=None if discrete else [1.0] * act_dim,
                      hparams={"hidden": hidden, "n_layer": n_layer, "n_head": n_head, **hp})
    model = DecisionTransformer(cfg)
    with torch.no_grad():   # GPT-2 init is nearly uniform; spread the weights so actions depend on the input
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def random_inputs(model, B=4, L=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, L, model.obs_dim, generator=g)
    if model.discrete:
        a = torch.nn.functional.one_hot(torch.randint(0, model.config.n_actions, (B, L), generator=g),
                                        model.config.n_actions).float()
    else:
        a = torch.rand(B, L, model.act_dim, generator=g) * 2 - 1
    R = torch.randn(B, L, 1, generator=g)
    t = torch.randint(0, model.config.max_ep_len, (B, L), generator=g)
    return s, a, R, t


def roll(model, steps, use_cache, n_envs=3, seed=0):
    """Acts against a fixed synthetic observation/reward stream (the same for both paths)."""
    ro = model.start_rollout(n_envs, np.linspace(20, 60, n_envs), seed=seed, use_cache=use_cache)
    rng = np.random.default_rng(1)
    out = []
    for _ in range(steps):
        out.append(ro.act(rng.normal(size=(n_envs, model.obs_dim)).astype(np.float32)))
        ro.observe(rng.random(n_envs).astype(np.float32))
    return np.stack(out)


# ---- (a) equality with Hugging Face ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.DecisionTransformerConfig(state_dim=5, act_dim=3, hidden_size=32, n_layer=2, n_head=2,
                                                 max_ep_len=50, action_tanh=True, attn_implementation="eager")
    hf = transformers.DecisionTransformerModel(cfg).eval()
    with torch.no_grad():   # HF zero-inits biases and sets layer norms to 1: randomise everything, wpe included
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    path = tmp_path_factory.mktemp("hf_dt")
    hf.save_pretrained(path)
    return hf, path, load_hf_decision_transformer(path, context_length=8, rtg_scale=10.0)


def test_hf_equality_with_left_padding(hf_pair):
    hf, _, ours = hf_pair
    B, L = 4, 8
    s, a, R, t = random_inputs(ours, B, L)
    a = torch.rand(B, L, 3) * 2 - 1
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, :3] = 0
    mask[2, :7] = 0
    with torch.no_grad():
        ref = hf(states=s, actions=a, returns_to_go=R, timesteps=t, attention_mask=mask, output_attentions=True,
                 output_hidden_states=True)
        out = ours(s, a, R, t, mask, output_attentions=True, output_hidden_states=True)
    # Padded query rows are excluded: HF masks with the dtype's minimum, so a padded row (no real key before
    # it) spreads uniformly over all 3L keys, future ones included; ours lets such a token see itself only.
    # Real rows never attend to padded keys in either, so their outputs are unaffected.
    real = mask.bool()
    for key in ("action_preds", "return_preds", "state_preds"):
        torch.testing.assert_close(out[key][real], getattr(ref, key)[real], atol=1e-5, rtol=0)
    real_tokens = real.repeat_interleave(3, dim=1)
    assert len(out.attentions) == len(ref.attentions) == 2
    for ours_att, ref_att in zip(out.attentions, ref.attentions):
        assert ours_att.shape == ref_att.shape == (B, 2, 3 * L, 3 * L)
        rows = lambda x: x.permute(0, 2, 1, 3)[real_tokens]  # noqa: E731  [real tokens, heads, keys]
        torch.testing.assert_close(rows(ours_att), rows(ref_att), atol=1e-5, rtol=0)
    # HF's hidden_states are (embeddings, block 0, ..., ln_f(last block)); ours are the block outputs
    torch.testing.assert_close(out.hidden_states[0][real_tokens], ref.hidden_states[1][real_tokens], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.encoder["ln_f"](out.hidden_states[-1])[real_tokens],
                               ref.last_hidden_state[real_tokens], atol=1e-5, rtol=0)


def test_hf_import_rollout_follows_hf_on_the_last_k_steps(hf_pair):
    """Past K an HF model's own semantics is a forward over the last K steps: the rollout matches it."""
    hf, _, ours = hf_pair
    K, n_envs, steps = ours.context_length, 2, 12
    ro = ours.start_rollout(n_envs, [30.0, 50.0], use_cache=True)
    rng = np.random.default_rng(3)
    S, A, R, T = [], [], [], []
    rtg = np.array([3.0, 5.0], np.float32)
    for t in range(steps):
        obs = rng.normal(size=(n_envs, 5)).astype(np.float32)
        act = ro.act(obs)
        S.append(obs), R.append(rtg.copy()), T.append(t), A.append(act)
        lo = max(0, t + 1 - K)
        with torch.no_grad():
            acts = np.stack(A[lo:-1] + [np.zeros_like(act)], 1)
            ref = hf(states=torch.tensor(np.stack(S[lo:], 1)), actions=torch.tensor(acts),
                     returns_to_go=torch.tensor(np.stack(R[lo:], 1))[..., None],
                     timesteps=torch.tensor(T[lo:]).expand(n_envs, -1)).action_preds[:, -1]
        np.testing.assert_allclose(act, ref.numpy(), atol=1e-5)
        r = rng.random(n_envs).astype(np.float32)
        ro.observe(r)
        rtg -= r / 10.0
    assert len(A) > K


def test_hf_import_errors(hf_pair, tmp_path):
    from safetensors.torch import load_file, save_file

    _, path, ours = hf_pair
    tensors = load_file(str(path / "model.safetensors"))
    cfg = json.loads((path / "config.json").read_text())
    assert ours.card()["attention"] == "causal (HF import)" and ours.card()["layers"] == 2

    missing = tmp_path / "missing"
    missing.mkdir()
    (missing / "config.json").write_text(json.dumps(cfg))
    save_file({k: v for k, v in tensors.items() if k != "encoder.h.1.mlp.c_fc.weight"}, str(missing / "model.safetensors"))
    with pytest.raises(ValueError, match="lack tensor 'encoder.h.1.mlp.c_fc.weight'"):
        load_hf_decision_transformer(missing)

    shape = tmp_path / "shape"
    shape.mkdir()
    (shape / "config.json").write_text(json.dumps({**cfg, "state_dim": 7}))
    save_file(tensors, str(shape / "model.safetensors"))
    with pytest.raises(ValueError, match=r"'embed_state.weight' has shape \(32, 5\).*state_dim 7.*implies \(32, 7\)"):
        load_hf_decision_transformer(shape)

    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(ValueError, match="expected 'decision_transformer'"):
        load_hf_decision_transformer(other)


# ---- (b) KV-cached rollout == exact recompute ------------------------------------------------------------
@pytest.mark.parametrize("discrete", [True, False])
def test_kv_cache_equals_recompute_past_3k(discrete):
    model = make_dt(discrete=discrete, K=4, n_layer=3)
    steps = 3 * 4 + 6   # past the 3-layer receptive field, where a plain sliding cache would drift
    cached, twin = roll(model, steps, True), roll(model, steps, False)
    if discrete:
        assert np.array_equal(cached, twin)                 # identical actions from identical draws
        assert len(np.unique(cached)) == 3                  # and the draws do vary
    else:
        np.testing.assert_allclose(cached, twin, atol=1e-5, rtol=0)   # float rounding only
        assert cached.min() >= -2.0 and cached.max() <= 1.0 and cached.std() > 0.05
    # argmax decoding follows the same path
    if discrete:
        ro_c, ro_t = (model.start_rollout(2, [10, 10], sample=False, use_cache=u) for u in (True, False))
        obs = np.random.default_rng(0).normal(size=(steps, 2, 3)).astype(np.float32)
        assert [ro_c.act(o).tolist() for o in obs] == [ro_t.act(o).tolist() for o in obs]


def test_banded_attention_matches_window_semantics():
    """Over a long sequence, the banded model's action at step t depends on exactly the last n_layer*(K-1)+1
    steps (the receptive field; the rollout twin recomputes n_layer*K): with one layer, the last K steps,
    plain DT semantics."""
    K = 4
    for n_layer in (1, 3):
        field = n_layer * (K - 1) + 1
        model = make_dt(K=K, n_layer=n_layer).eval()
        s, a, R, t = random_inputs(model, B=2, L=20)
        with torch.no_grad():
            def last_action(w):
                return model(s[:, -w:], a[:, -w:], R[:, -w:], t[:, -w:]).action_preds[:, -1]

            full = last_action(20)
            torch.testing.assert_close(last_action(field), full, atol=1e-5, rtol=0)
            torch.testing.assert_close(last_action(n_layer * K), full, atol=1e-5, rtol=0)
            assert (last_action(field - 1) - full).abs().max() > 1e-4   # and not a step shorter


# ---- (c) learning a known answer -------------------------------------------------------------------------
def test_learns_a_known_mapping():
    """Action = (obs[0] > 0); reward 1 per step over 12-step episodes, so R_t = 12 - t is known from t alone."""
    rng = np.random.default_rng(0)
    E, T = 40, 12
    obs = rng.normal(size=(E * T, 2)).astype(np.float32)
    ds = Dataset(obs, (obs[:, 0] > 0).astype(np.int64), np.ones(E * T, np.float32), np.tile(np.eye(T)[-1], E).astype(bool),
                 np.zeros(E * T, bool), np.arange(0, E * T, T))
    cfg = AgentConfig(kind="dt", obs_dim=2, act_dim=1, discrete=True, n_actions=2, context_length=4, max_ep_len=16,
                      rtg_scale=10.0, hparams={"hidden": 32, "n_layer": 2, "n_head": 2, "dropout": 0.0, "rtg_dropout": 0.5})
    torch.manual_seed(0)
    model = DecisionTransformer(cfg)
    data = TrainingData.build(ds, np.zeros(2), np.ones(2), cfg.rtg_scale, cfg.max_ep_len)
    history = fit(model, data, 300, rng)
    losses = [m["loss"] for m in history]
    assert all(set(m) >= {"loss", "action_loss", "return_loss", "value_loss", "action_acc"} for m in history)
    assert np.mean(losses[-20:]) < 0.1 * np.mean(losses[:20])

    # the known answers: argmax actions follow obs[0] > 0 in a rollout; the value head gives 12 - t
    ro = model.start_rollout(8, np.full(8, 12.0), sample=False)
    test_obs = np.random.default_rng(5).normal(size=(T, 8, 2)).astype(np.float32)
    test_obs[..., 0] += np.sign(test_obs[..., 0]) * 0.2   # keep clear of the decision boundary
    acts = []
    for o in test_obs:
        acts.append(ro.act(o))
        ro.observe(np.ones(8, np.float32))
    assert (np.stack(acts) == (test_obs[..., 0] > 0)).all()
    w = gather_windows(data, np.array([0]), np.array([T - 1]), T)   # episode 0 whole
    model.eval()
    with torch.no_grad():
        out = model(**model.window_inputs(w), rtg_known=False)
    np.testing.assert_allclose(out.value_preds[0, :, 0].numpy() * 10, 12 - np.arange(T), atol=1.0)


def test_continuous_actions_learn_in_env_bounds():
    """Continuous targets are mapped into [-1, 1] by the bounds and back: a constant -0.5 in bounds [-1, 1]
    and the clipped obs[0] in bounds [-2, 1] come back in env units."""
    rng = np.random.default_rng(0)
    E, T = 30, 10
    obs = rng.normal(size=(E * T, 2)).astype(np.float32)
    acts = np.stack([np.clip(obs[:, 0], -1.8, 0.8), np.full(E * T, -0.5)], 1).astype(np.float32)
    ds = Dataset(obs, acts, rng.random(E * T).astype(np.float32), np.tile(np.eye(T)[-1], E).astype(bool),
                 np.zeros(E * T, bool), np.arange(0, E * T, T))
    cfg = AgentConfig(kind="dt", obs_dim=2, act_dim=2, discrete=False, context_length=3, max_ep_len=16, rtg_scale=5.0,
                      action_low=[-2, -1], action_high=[1, 1], hparams={"hidden": 32, "n_layer": 2, "n_head": 2, "dropout": 0.0})
    torch.manual_seed(0)
    model = DecisionTransformer(cfg)
    data = TrainingData.build(ds, np.zeros(2), np.ones(2), cfg.rtg_scale, cfg.max_ep_len)
    fit(model, data, 150, rng)
    ro = model.start_rollout(16, np.full(16, 5.0))
    o = np.random.default_rng(1).normal(size=(16, 2)).astype(np.float32)
    a = ro.act(o)
    np.testing.assert_allclose(a[:, 1], -0.5, atol=0.1)
    np.testing.assert_allclose(a[:, 0], np.clip(o[:, 0], -1.8, 0.8), atol=0.2)


# ---- (d) timesteps beyond max_ep_len ---------------------------------------------------------------------
def test_timesteps_beyond_max_ep_len_clip_with_a_warning():
    model = make_dt().eval()
    s, a, R, _ = random_inputs(model, B=2, L=5)
    t = torch.tensor([[97, 98, 99, 100, 250]] * 2)
    with torch.no_grad(), pytest.warns(UserWarning, match="beyond the model's max_ep_len 100"):
        late = model(s, a, R, t).action_preds
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        clipped = model(s, a, R, t.clamp(max=99)).action_preds
    torch.testing.assert_close(late, clipped)
    ro = model.start_rollout(2, [5.0, 5.0])
    with pytest.warns(UserWarning, match="max_ep_len") as record:
        for _ in range(103):
            ro.act(np.zeros((2, 3), np.float32))
    assert sum("max_ep_len" in str(r.message) for r in record) == 1   # once per rollout, not every step


# ---- (e) padding -----------------------------------------------------------------------------------------
def test_fully_masked_rows_give_no_nan_and_left_padding_is_invisible():
    model = make_dt(K=6, n_layer=2).eval()
    s, a, R, t = random_inputs(model, B=3, L=6)
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[0] = 0          # a fully padded sequence
    mask[1, :4] = 0      # left padding
    with torch.no_grad():
        out = model(s, a, R, t, mask, output_attentions=True, output_hidden_states=True)
        short = model(s[1:2, 4:], a[1:2, 4:], R[1:2, 4:], t[1:2, 4:])
    for x in (out.action_preds, out.return_preds, out.state_preds, out.value_preds, *out.attentions, *out.hidden_states):
        assert torch.isfinite(x).all()
    # a left-padded window is the same as the short window alone (no position-in-window embedding)
    torch.testing.assert_close(out.action_preds[1, 4:], short.action_preds[0], atol=1e-5, rtol=0)
    # gradients through padded rows stay finite too
    model.train()
    batch = {"states": s, "actions": a, "returns_to_go": R, "timesteps": t, "attention_mask": mask,
             "action_targets": a.argmax(-1), "next_returns": R[..., 0], "rtg_known": torch.tensor([True, False, True])}
    loss, _ = model.loss(batch)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ---- (f) the value head never sees the return-to-go ------------------------------------------------------
def test_value_head_does_not_see_rtg():
    model = make_dt().eval()
    s, a, R, t = random_inputs(model)
    R2 = R + torch.randn_like(R) * 5
    with torch.no_grad():
        hidden1, hidden2 = model(s, a, R, t, rtg_known=False), model(s, a, R2, t, rtg_known=False)
        known1, known2 = model(s, a, R, t), model(s, a, R2, t)
        mixed = model(s, a, R2, t, rtg_known=torch.tensor([False, True, False, True]))
    torch.testing.assert_close(hidden1.value_preds, hidden2.value_preds, atol=0, rtol=0)
    assert (known1.return_preds - known2.return_preds).abs().max() > 1e-3
    assert (known1.action_preds - known2.action_preds).abs().max() > 1e-3
    torch.testing.assert_close(mixed.value_preds[0::2], hidden1.value_preds[0::2])
    torch.testing.assert_close(mixed.return_preds[1::2], known2.return_preds[1::2])


# ---- checkpoint round trip and config checks -------------------------------------------------------------
def test_config_round_trip_rebuilds_the_same_model():
    model = make_dt(discrete=False).eval()
    cfg = AgentConfig.from_dict(json.loads(json.dumps(model.config.to_dict())))
    same = DecisionTransformer(cfg).eval()
    same.load_state_dict(model.state_dict())
    s, a, R, t = random_inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(same(s, a, R, t).action_preds, model(s, a, R, t).action_preds)
    assert model.card()["hidden"] == 32 and model.card()["layers"] == 3 and model.card()["heads"] == 2
    assert model.config.hparams["train_window"] == 4  # default: K steps
    with pytest.raises(ValueError, match="unknown dt hyperparameter hiden"):
        DecisionTransformer(AgentConfig(kind="dt", obs_dim=2, act_dim=1, discrete=True, n_actions=2, hparams={"hiden": 8}))


def test_load_agent_reads_hf_dirs_and_zips(hf_pair, tmp_path):
    import shutil
    import zipfile

    from models import AgentError, load_agent

    _, path, _ = hf_pair
    agent = load_agent(path, context_length=5, rtg_scale=500.0)
    assert agent.kind == "dt" and agent.context_length == 5 and agent.config.rtg_scale == 500.0
    with zipfile.ZipFile(tmp_path / "hf.zip", "w") as zf:
        for p in Path(path).iterdir():
            zf.write(p, f"hf/{p.name}")
    zipped = load_agent(tmp_path / "hf.zip", context_length=5, rtg_scale=500.0)
    assert all(torch.equal(a, b) for a, b in zip(agent.state_dict().values(), zipped.state_dict().values()))
    pickled = tmp_path / "pickled"
    shutil.copytree(path, pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(AgentError, match="pytorch_model.bin"):
        load_agent(pickled)
