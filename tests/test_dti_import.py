"""`cli.py convert-agent --from dti FILE`: DTI checkpoints (tests/dti_reference.py, saved with torch.save as DTI's
store_transformer_model does) -> seqlens Decision Transformers whose logits equal DTI's within 1e-5."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cli
import dti_reference as dti
from models import load_agent

# (model_config overrides, one-hot observations, n_actions, max_steps): every model_config variant DTI trains
VARIANTS = {
    "ln-relu-grid-k3": (dict(n_ctx=8, layer_norm="LN"), False, 3, 40),
    "no-ln-gelu-gated-onehot-k2": (dict(n_ctx=5, layer_norm=None, activation_fn="gelu", gated_mlp=True), True, 7, 30),
    "ln-false-gated-linear-time-k4": (dict(n_ctx=11, layer_norm=False, gated_mlp=True, time_embedding_type="linear",
                                           n_layers=1, n_heads=4), False, 4, 50),
    "ln-gelu-onehot-k1": (dict(n_ctx=2, layer_norm="LN", activation_fn="gelu"), True, 3, 20),
    "lnpre-relu-k2": (dict(n_ctx=5, layer_norm="LNPre"), False, 3, 20),
}


def run_cli(capsys, *args):
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def make_reference(label: str, seed: int = 0):
    over, one_hot, n_actions, max_steps = VARIANTS[label]
    mc = dti.model_config(**over)
    shape = (7, 7, 20 if one_hot else 3)   # minigrid's 7x7 view: 20 one-hot values per cell, or 3 codes
    ref_cfg = dict(mc, layer_norm="LN" if mc["layer_norm"] == "LNPre" else mc["layer_norm"])
    ref = dti.DTIReference(ref_cfg, n_actions, shape, max_steps).randomize(seed).eval()
    state = ref.state_dict()
    if mc["layer_norm"] == "LNPre":   # TransformerLens' LayerNormPre: LN without weights (= w 1, b 0)
        with torch.no_grad():
            for name, p in ref.named_parameters():
                if name.endswith((".w", ".b")) and (".ln" in name or "ln_final" in name):
                    p.fill_(1.0 if name.endswith(".w") else 0.0)
        state = {k: v for k, v in ref.state_dict().items() if not (".ln" in k or "ln_final" in k)}
    env = dti.environment_config("MiniGrid-MemoryS7FixedStart-v0", max_steps, one_hot)
    return ref, mc, env, state, shape, n_actions, max_steps


@pytest.fixture(scope="module", params=list(VARIANTS))
def converted(request, tmp_path_factory):
    ref, mc, env, state, shape, n_actions, max_steps = make_reference(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    path = folder / "MemoryDT.pt"
    dti.checkpoint(path, ref, env, mc, state)
    out = folder / "agent"
    assert cli.main(["convert-agent", str(path), "--out", str(out), "--json"]) == 0   # --from detected
    return request.param, ref, load_agent(out), shape, n_actions, max_steps


def inputs(shape, n_actions, max_steps, K, B=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    one_hot = shape[2] == 20
    states = (torch.rand(B, K, *shape, generator=g) < 0.2).float() if one_hot else \
        torch.randint(0, 6, (B, K, *shape), generator=g).float()
    actions = torch.randint(0, n_actions, (B, K), generator=g)
    rtg = torch.rand(B, K, generator=g) * 2 - 0.5
    steps = torch.randint(0, max_steps - K + 1, (B, 1), generator=g) + torch.arange(K)
    return states, actions, rtg, steps


def ref_logits(ref, states, actions, rtg, steps, **broken):
    K = states.shape[1]
    with torch.no_grad():
        return ref(states, actions[:, :K - 1, None] if K > 1 else None, rtg[..., None], steps[..., None], **broken)


def agent_out(agent, states, actions, rtg, steps, mask=None):
    with torch.no_grad():
        return agent(states, F.one_hot(actions, agent.config.n_actions).float(), rtg[..., None], steps, mask)


def test_config_follows_dti(converted):
    label, ref, agent, shape, n_actions, max_steps = converted
    c, hp = agent.config, agent.config.hparams
    K = (ref.cfg["n_ctx"] + 1) // 3
    assert (c.obs_dim, c.n_actions, c.context_length, c.max_ep_len, c.rtg_scale) == (
        int(np.prod(shape)), n_actions, K, max_steps + 1, 1.0)
    assert hp["obs_shape"] == list(shape) and hp["state_encoder"] == "grid" and hp["padding"] == "dti"
    assert hp["hf_import"] == "dti:MemoryDT.pt" and agent.card()["attention"].endswith("(DTI import)")
    assert not agent.has("kv_cache") and not agent.has("partial_forward") and agent.has("attention")
    assert hp["layer_norm"] == ref.cfg["layer_norm"] and hp["embed_ln"] is False


def test_full_windows_equal_dti(converted):
    label, ref, agent, shape, n_actions, max_steps = converted
    K = agent.context_length
    states, actions, rtg, steps = inputs(shape, n_actions, max_steps, K)
    _, want, want_r = ref_logits(ref, states, actions, rtg, steps)
    out = agent_out(agent, states, actions, rtg, steps)
    torch.testing.assert_close(out.action_preds, want, atol=1e-5, rtol=0)
    assert float(want.std()) > 0.1   # logits that depend on the inputs, or equality would prove little
    if K > 1:   # DTI reads its last reward prediction from s_K (get_logits); the others from the a tokens, as ours
        torch.testing.assert_close(out.return_preds[:, :-1], want_r[:, :-1], atol=1e-5, rtol=0)
    # states in the observation's own shape or flattened in its order: the same model
    flat = agent_out(agent, states.reshape(*states.shape[:2], -1), actions, rtg, steps)
    torch.testing.assert_close(flat.action_preds, out.action_preds, atol=0, rtol=0)


def test_short_windows_equal_dti_padded_windows(converted):
    """DTI evaluates a short window left-padded to K steps with its pad tokens, attended to. The agent gets the
    same logits from a K-step window with an attention mask (garbage in the pads) and from the L steps alone."""
    label, ref, agent, shape, n_actions, max_steps = converted
    K = agent.context_length
    if K == 1:
        pytest.skip("a one-step window is never padded")
    states, actions, rtg, steps = inputs(shape, n_actions, max_steps, K, seed=2)
    steps = steps - steps[:, :1]   # an episode's first steps, where DTI pads
    for L in range(1, K):
        s, a, r, t = dti.padded_window(states[:, :L], actions[:, :L - 1], rtg[:, :L], steps[:, :L], K, n_actions)
        with torch.no_grad():
            want = ref(s, a, r, t)[1][:, K - L:]
            unpadded = ref_logits(ref, states[:, :L], actions[:, :L], rtg[:, :L], steps[:, :L])[1]
        mask = (torch.arange(K) >= K - L).long().expand(states.shape[0], -1)
        garbage = inputs(shape, n_actions, max_steps, K, seed=9)
        pad = lambda x, y: torch.cat([y[:, :K - L], x[:, :L]], 1)   # noqa: E731
        masked = agent_out(agent, pad(states, garbage[0]), pad(actions, garbage[1]), pad(rtg, garbage[2]),
                           pad(steps, garbage[3]), mask)
        torch.testing.assert_close(masked.action_preds[:, K - L:], want, atol=1e-5, rtol=0)
        alone = agent_out(agent, states[:, :L], actions[:, :L], rtg[:, :L], steps[:, :L])
        torch.testing.assert_close(alone.action_preds, want, atol=1e-5, rtol=0)
        # leaving off DTI's padding (the L steps alone, as a masked model reads them) changes the logits
        assert float((unpadded - want).abs().max()) > 1e-3


def test_broken_variants_differ(converted):
    """The time embedding on action tokens and the grid's (channel, height, width) flattening both change the
    logits, so the equality above would catch an importer that dropped either."""
    label, ref, agent, shape, n_actions, max_steps = converted
    K = agent.context_length
    states, actions, rtg, steps = inputs(shape, n_actions, max_steps, K, seed=3)
    want = ref_logits(ref, states, actions, rtg, steps)[1]
    if K > 1:
        no_time = ref_logits(ref, states, actions, rtg, steps, time_on_actions=False)[1]
        assert float((no_time - want).abs().max()) > 1e-3
    hwc = ref_logits(ref, states, actions, rtg, steps, flatten="hwc")[1]
    assert float((hwc - want).abs().max()) > 1e-3


def test_rollout_acts_as_dti_evaluation(converted):
    """DTI's evaluate_dt_agent: a K-step window padded as initialize_padding_inputs pads it, rtg minus rewards (no
    scale), timesteps counting up, argmax of the last step's logits. Past K steps too (the window slides)."""
    label, ref, agent, shape, n_actions, max_steps = converted
    K, B, T = agent.context_length, 2, agent.context_length + 3
    target = np.array([0.9, 0.4], np.float32)
    ro = agent.start_rollout(B, target, sample=False)
    rng = np.random.default_rng(4)
    S, A, R = [], [], [torch.as_tensor(target)]
    for t in range(T):
        obs = rng.integers(0, 6, size=(B, *shape)).astype(np.float32)
        S.append(torch.as_tensor(obs))
        lo = max(0, t + 1 - K)
        states = torch.stack(S[lo:], 1)
        acts = torch.stack(A[lo:], 1) if len(A[lo:]) else torch.zeros(B, 0, dtype=torch.long)
        rtg = torch.stack(R[lo:], 1)
        steps = torch.arange(lo, t + 1).expand(B, -1)
        L = states.shape[1]
        s, a, r, ts = dti.padded_window(states, acts[:, :L - 1], rtg, steps, K, n_actions)
        with torch.no_grad():
            logits = ref(s, a if K > 1 else None, r, ts)[1][:, -1]
        got = ro.act(obs)
        np.testing.assert_allclose(ro.policy(), logits.softmax(-1).numpy(), atol=1e-5)
        assert got.tolist() == logits.argmax(-1).tolist()
        A.append(torch.as_tensor(got))
        reward = rng.uniform(0, 0.2, size=B).astype(np.float32)
        ro.observe(reward)
        R.append(R[-1] - torch.as_tensor(reward))


def test_named_activations_and_interventions_run(converted):
    """Every analysis reads the converted agent through run_with_cache; interventions change its logits."""
    label, ref, agent, shape, n_actions, max_steps = converted
    K = agent.context_length
    states, actions, rtg, steps = inputs(shape, n_actions, max_steps, K, seed=5)
    kw = {"states": states, "actions": F.one_hot(actions, n_actions).float(), "returns_to_go": rtg[..., None],
          "timesteps": steps}
    with torch.no_grad():
        out, cache = agent.run_with_cache(kw, names=None)
        ablated, _ = agent.run_with_cache(kw, names=[], interventions={"blocks.0.attn.head_out": torch.zeros_like})
    assert set(cache) == set(agent.activation_names())
    assert cache["blocks.0.attn.pattern"].shape == (3, agent.n_head, 3 * K, 3 * K)
    torch.testing.assert_close(cache["blocks.0.attn.pattern"].sum(-1), torch.ones(3, agent.n_head, 3 * K))
    torch.testing.assert_close(out.action_preds, ref_logits(ref, states, actions, rtg, steps)[1], atol=1e-5, rtol=0)
    assert float((ablated.action_preds - out.action_preds).abs().max()) > 1e-4


# ---- refusals: one sentence each, nothing written ------------------------------------------------------------
def _bad(ref, mc, env, state):
    sd = dict(state)
    d = mc["d_model"]
    no_ln = {k: v for k, v in sd.items() if ".ln" not in k and "ln_final" not in k}
    return {
        "config contradicts tensors (layer norm)": (dict(mc, layer_norm=None), env, sd, "which a DTI Decision Transformer"),
        "config contradicts tensors (d_model)": (dict(mc, d_model=2 * d, n_heads=2), env, sd, "d_model 32"),
        "layer norm missing": (mc, env, no_ln, "lacks 'transformer.blocks.0.ln1.w'"),
        "gated without W_gate": (dict(mc, gated_mlp=True), env, sd, "gated_mlp True"),
        "unknown state_embedding_type": (dict(mc, state_embedding_type="CNN"), env, sd, "state_embedding_type 'CNN'"),
        "n_ctx not 3K - 1": (dict(mc, n_ctx=7), env, sd, "3K - 1 tokens"),
        "n_ctx vs position table": (dict(mc, n_ctx=5), env, sd, "W_pos has 8 rows"),
        "n_layers": (dict(mc, n_layers=3), env, sd, "n_layers 3"),
        "view size": (mc, dict(env, view_size=5), sd, "5x5 view"),
        "one-hot flag": (mc, dict(env, one_hot_obs=True), sd, "980 values"),
        "max_steps vs time table": (mc, dict(env, max_steps=99), sd, "environment_config's max_steps 99"),
        "unknown activation": (dict(mc, activation_fn="solu_ln"), env, sd, "activation_fn"),
        "non-causal mask": (mc, env, {**sd, "transformer.blocks.0.attn.mask": torch.ones(8, 8, dtype=torch.bool)},
                            "not a causal mask"),
        "mask size": (mc, env, {**sd, "transformer.blocks.0.attn.mask": torch.ones(5, 5, dtype=torch.bool).tril()},
                      "[8, 8] causal mask"),
        "non-finite weight": (mc, env, {**sd, "reward_predictor.bias": torch.tensor([float("nan")])}, "non-finite"),
        "integer weight": (mc, env, {**sd, "reward_predictor.bias": torch.tensor([1])}, "floating point"),
        "extra tensor": (mc, env, {**sd, "value_predictor.weight": torch.zeros(1, d)}, "value_predictor.weight"),
        "img_obs": (mc, dict(env, img_obs=True), sd, "img_obs"),
        "bad max_steps": (mc, dict(env, max_steps="1000"), sd, "max_steps"),
    }


BAD = ["config contradicts tensors (layer norm)", "config contradicts tensors (d_model)", "layer norm missing",
       "gated without W_gate", "unknown state_embedding_type", "n_ctx not 3K - 1", "n_ctx vs position table",
       "n_layers", "view size", "one-hot flag", "max_steps vs time table", "unknown activation", "non-causal mask",
       "mask size", "non-finite weight", "integer weight", "extra tensor", "img_obs", "bad max_steps"]


@pytest.fixture(scope="module")
def good():
    return make_reference("ln-relu-grid-k3")


@pytest.mark.parametrize("label", BAD)
def test_bad_checkpoints_get_one_sentence(good, tmp_path, capsys, label):
    ref, mc, env, state, *_ = good
    cases = _bad(ref, mc, env, state)
    assert sorted(cases) == sorted(BAD)
    m, e, sd, expected = cases[label]
    src = tmp_path / "bad.pt"
    dti.checkpoint(src, ref, e, m, sd)
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "convert-agent", src, "--from", "dti", "--out", out, "--json")
    lines = err.strip().splitlines()
    assert rc == 2 and stdout == "" and len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]
    assert not out.exists()


def test_files_that_are_not_dti_checkpoints(good, tmp_path, capsys):
    ref, mc, env, state, *_ = good
    plain = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, plain)
    rc, _, err = run_cli(capsys, "convert-agent", plain, "--out", tmp_path / "o1")
    assert rc == 2 and "cannot tell what weights.pt holds" in err
    torch.save({"model_state_dict": state, "model_config": "{not json", "environment_config": json.dumps(env)},
               tmp_path / "j.pt")
    rc, _, err = run_cli(capsys, "convert-agent", tmp_path / "j.pt", "--from", "dti", "--out", tmp_path / "o2")
    assert rc == 2 and "'model_config' is not valid JSON" in err
    torch.save({"model_state_dict": state, "model_config": json.dumps(mc)}, tmp_path / "k.pt")
    rc, _, err = run_cli(capsys, "convert-agent", tmp_path / "k.pt", "--from", "dti", "--out", tmp_path / "o3")
    assert rc == 2 and "lacks 'environment_config'" in err
    torch.save({"model_state_dict": state, "model_config": json.dumps(mc), "environment_config": "x" * 70_000},
               tmp_path / "big.pt")
    rc, _, err = run_cli(capsys, "convert-agent", tmp_path / "big.pt", "--from", "dti", "--out", tmp_path / "o4")
    assert rc == 2 and "over the limit of 65,536" in err
    rc, _, err = run_cli(capsys, "convert-agent", tmp_path, "--from", "dti", "--out", tmp_path / "o5")
    assert rc == 2 and "is not a file" in err
    good_file = tmp_path / "good.pt"
    dti.checkpoint(good_file, ref, env, mc, state)
    rc, _, err = run_cli(capsys, "convert-agent", good_file, "--out", tmp_path / "o6", "--context", "3")
    assert rc == 2 and "--context and --rtg-scale apply to --from hf only" in err
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 7))
    rc, stdout, _ = run_cli(capsys, "convert-agent", good_file, "--out", tmp_path / "o7", "--json")
    r = json.loads(stdout)
    assert rc == 0 and r["from"] == "dti" and r["obs_shape"] == [7, 7, 3] and r["context_length"] == 3
    rc, _, err = run_cli(capsys, "convert-agent", good_file, "--out", tmp_path / "o7")
    assert rc == 2 and "already exists" in err


def test_last_state_only_reads_the_whole_forward(converted):
    """Analyses that ask for the last s token alone (embeddings, ablation) get the whole forward's numbers, cut to
    the shapes a native DT's partial forward returns."""
    label, ref, agent, shape, n_actions, max_steps = converted
    K, n = agent.context_length, agent.n_layer
    states, actions, rtg, steps = inputs(shape, n_actions, max_steps, K, seed=6)
    kw = {"states": states, "actions": F.one_hot(actions, n_actions).float(), "returns_to_go": rtg[..., None],
          "timesteps": steps}
    names = [f"blocks.{n - 1}.resid_post", f"blocks.{n - 1}.attn.pattern", "blocks.0.resid_pre", "ln_final.out"]
    with torch.no_grad():
        full, cache = agent.run_with_cache(kw, names=names)
        part, cut = agent.run_with_cache(kw, names=names, last_state_only=True)
    T = 3 * K
    torch.testing.assert_close(part.action_preds, full.action_preds[:, -1:], atol=0, rtol=0)
    torch.testing.assert_close(cut[f"blocks.{n - 1}.resid_post"], cache[f"blocks.{n - 1}.resid_post"][:, T - 2:T - 1])
    assert cut[f"blocks.{n - 1}.attn.pattern"].shape == (3, agent.n_head, 1, T - 1)
    assert cut["blocks.0.resid_pre"].shape[1] == T - 1 and cut["ln_final.out"].shape[1] == 1
    assert part.return_preds is None and part.value_preds.shape == (3, 1, 1)


def grid_dataset(shape, n_actions, seed=0):
    """Three short episodes of grid observations (flattened in their own order) with a reward at each end."""
    from trajectories.dataset import Dataset

    rng = np.random.default_rng(seed)
    n = 30
    ends = np.array([9, 19, 29])
    rewards = np.zeros(n, np.float32)
    rewards[ends] = 0.9
    done = np.zeros(n, bool)
    done[ends] = True
    obs = rng.integers(0, 2 if shape[2] == 20 else 6, size=(n, int(np.prod(shape)))).astype(np.float32)
    return Dataset(obs, rng.integers(0, n_actions, size=n).astype(np.int64), rewards, done, np.zeros(n, bool),
                   np.array([0, 10, 20]), n_actions=n_actions)


def test_analyses_run_on_converted_agents(converted):
    """Attention, DLA (its parts sum to the logit, layer norms or none), patching and ablation on a DTI agent."""
    from analysis.interp import ablation, attention, dla, patching

    label, ref, agent, shape, n_actions, max_steps = converted
    ds = grid_dataset(shape, n_actions)
    att = attention.window_attention(agent, ds, 0, 6)
    assert np.isfinite(att.weights).all()
    d = dla.direct_logit_attribution(agent, ds, 0, 6)
    assert d.total == pytest.approx(d.output, abs=1e-5) and abs(d.output) > 1e-3
    if agent.context_length > 1:
        grid = patching.patch_positions(agent, patching.make_pair(agent, ds, 1, 6, corrupt="episode"))
        assert np.isfinite(grid.patched).all() and grid.patched.shape[0] == agent.n_layer + 1
    res = ablation.ablation(agent, ds, ["L0H0"], n_steps=20)
    assert res is not None
    ro = agent.start_rollout(2, [1.0, 0.5], record_attention=True)   # the player's and sweeps' recorded attention
    for t in range(agent.context_length + 1):
        ro.act(ds.observations[t:t + 2])
        ro.observe(np.zeros(2))
        assert ro.attention.shape == (2, agent.n_layer, agent.n_head, agent.context_length, 3)
        assert np.all(ro.attention.sum((-2, -1)) <= 1 + 1e-5)


def test_obs_transform_and_shaped_states_follow_the_observations_layout():
    """A DT whose observations have a shape: obs_transform (windows' hook for shaped data) is `normalize` laid out in
    that shape, and states given in the shape or flattened in its C order are the same input."""
    from models.base import AgentConfig
    from models.decision_transformer import DecisionTransformer

    rng = np.random.default_rng(0)
    shape = (2, 3, 2)
    config = AgentConfig(kind="dt", obs_dim=12, act_dim=1, discrete=True, n_actions=3, context_length=2,
                         state_mean=rng.normal(size=12).tolist(), state_std=rng.uniform(1, 3, size=12).tolist(),
                         hparams={"hidden": 8, "n_layer": 1, "obs_shape": list(shape), "state_encoder": "grid"})
    torch.manual_seed(0)
    agent = DecisionTransformer(config).eval()
    raw = rng.integers(0, 256, size=(2, 2, *shape)).astype(np.uint8)
    got = agent.obs_transform(raw)
    want = agent.normalize(torch.as_tensor(raw.reshape(2, 2, -1), dtype=torch.float32)).numpy().reshape(raw.shape)
    assert got.dtype == np.float32 and got.shape == raw.shape
    np.testing.assert_allclose(got, want, rtol=1e-6)
    states = torch.as_tensor(got)
    acts, rtg, ts = F.one_hot(torch.tensor([[0, 2], [1, 1]]), 3).float(), torch.ones(2, 2, 1), torch.tensor([[0, 1]] * 2)
    with torch.no_grad():
        a = agent(states, acts, rtg, ts).action_preds
        b = agent(states.reshape(2, 2, 12), acts, rtg, ts).action_preds
        c = agent(states.permute(0, 1, 4, 2, 3).reshape(2, 2, 2, 3, 2), acts, rtg, ts)   # (c, h, w) order
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert float((c.action_preds - a).abs().max()) > 0   # same numbers in another order are another observation


def test_short_windows_show_the_callers_steps(converted):
    """A window of L < K steps runs as DTI's padded K-step window, but its named activations, attentions and
    interventions cover the caller's L steps: equal to the real part of the same window given left-padded to K."""
    label, ref, agent, shape, n_actions, max_steps = converted
    K = agent.context_length
    if K == 1:
        pytest.skip("a one-step window is never padded")
    L, c = K - 1, 3
    states, actions, rtg, steps = inputs(shape, n_actions, max_steps, K, seed=7)
    steps = steps - steps[:, :1]
    onehot = F.one_hot(actions, n_actions).float()
    masked = {"states": states, "actions": onehot, "returns_to_go": rtg[..., None], "timesteps": steps,
              "attention_mask": (torch.arange(K) >= K - L).long().expand(3, -1)}
    short = {"states": states[:, 1:], "actions": onehot[:, 1:], "returns_to_go": rtg[:, 1:, None],
             "timesteps": steps[:, 1:]}
    names = ["embed.s", "blocks.0.resid_post", "blocks.0.attn.pattern", "ln_final.out"]
    last = {"blocks.0.resid_mid": lambda t: torch.cat([t[:, :-2], t[:, -2:-1] * 0, t[:, -1:]], 1)}
    with torch.no_grad():
        m_out, m = agent.run_with_cache(masked, names=names)
        s_out, s = agent.run_with_cache(short, names=names)
        m_int, _ = agent.run_with_cache(masked, names=[], interventions=last)
        s_int, _ = agent.run_with_cache(short, names=[], interventions=last)
        full = agent(**short, output_attentions=True, output_hidden_states=True)
    assert s["embed.s"].shape[1] == L and s["blocks.0.resid_post"].shape[1] == 3 * L
    torch.testing.assert_close(s["embed.s"], m["embed.s"][:, 1:], atol=1e-6, rtol=0)
    torch.testing.assert_close(s["blocks.0.resid_post"], m["blocks.0.resid_post"][:, c:], atol=1e-5, rtol=0)
    torch.testing.assert_close(s["blocks.0.attn.pattern"], m["blocks.0.attn.pattern"][:, :, c:, c:], atol=1e-6, rtol=0)
    torch.testing.assert_close(full.attentions[0], s["blocks.0.attn.pattern"], atol=0, rtol=0)
    torch.testing.assert_close(full.hidden_states[0], s["blocks.0.resid_post"], atol=0, rtol=0)
    assert float(s["blocks.0.attn.pattern"].sum(-1).min()) < 1 - 1e-4   # the share DTI's pads took stays out
    torch.testing.assert_close(s_out.action_preds, m_out.action_preds[:, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(s_int.action_preds, m_int.action_preds[:, 1:], atol=1e-5, rtol=0)
    assert float((s_int.action_preds - s_out.action_preds).abs().max()) > 1e-4


@pytest.mark.parametrize("change, expected", [
    ({"state_encoder": "cnn"}, "field 'hparams.state_encoder' is 'cnn'"),
    ({"padding": "zeros"}, "field 'hparams.padding' is 'zeros'"),
    ({"obs_shape": [7, 7, 4]}, "obs_shape [7, 7, 4] holds 196 values, not obs_dim 147"),
    ({"obs_shape": "7x7x3"}, "field 'hparams.obs_shape' must be a list"),
    ({"n_positions": 4}, "cannot hold a window of 3 steps"),
    ({"gated_mlp": "yes"}, "field 'hparams.gated_mlp' must be true or false"),
    ({"padding": "dti", "banded": True}, "DTI padding needs plain causal attention"),
])
def test_edited_config_json_is_refused_with_one_sentence(good, tmp_path, capsys, change, expected):
    """A converted agent's config.json is data too: the new switches are checked before anything is built."""
    from models.errors import AgentError

    ref, mc, env, state, *_ = good
    src = tmp_path / "good.pt"
    dti.checkpoint(src, ref, env, mc, state)
    out = tmp_path / "agent"
    assert run_cli(capsys, "convert-agent", src, "--out", out)[0] == 0
    cfg = json.loads((out / "config.json").read_text())
    cfg["hparams"].update(change)
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(AgentError) as e:
        load_agent(out)
    assert expected in str(e.value) and "\n" not in str(e.value)
