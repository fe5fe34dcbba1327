"""models/dt_atari_import.py: the DT paper's Atari state dicts, saved with torch.save from tests/dt_atari_reference.py
(kzl's model_atari.py re-implemented), parsed weights-only; the canonical tensors reproduce its forward."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dt_atari_reference as ref
from models.dt_atari_import import conv_side, parse_state_dict, read_dt_atari
from models.errors import AgentError

SIZES = dict(vocab_size=6, block_size=3 * 5, n_layer=2, n_head=4, n_embd=32, max_timestep=40)


@pytest.fixture(scope="module")
def model():
    return ref.randomize(ref.GPT(**SIZES), seed=3)


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("dt_atari") / "Breakout_123.pth"
    torch.save(model.state_dict(), path)
    return path


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def canonical_forward(W: dict, cfg: dict, states, actions, rtgs, timesteps, training: bool = False):
    """The forward written from the canonical names alone (TransformerLens-style weights)."""
    t = {k: torch.from_numpy(v) for k, v in W.items()}
    H, h, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    B, T = states.shape[:2]
    x = states.reshape(-1, cfg["frame_stack"], cfg["frame_size"], cfg["frame_size"]).float()
    for i, stride in enumerate((4, 2, 1)):
        x = F.conv2d(x, t[f"embed.state.conv{i}.weight"], t[f"embed.state.conv{i}.bias"], stride=stride).relu()
    s = torch.tanh(x.flatten(1) @ t["embed.state.W"] + t["embed.state.b"]).reshape(B, T, H)
    r = torch.tanh(rtgs.float() @ t["embed.return.W"] + t["embed.return.b"])
    if actions is None:
        tokens = torch.stack([r, s], 2).reshape(B, 2 * T, H)
    else:
        a = torch.tanh(t["embed.action.W_E"][actions[..., 0].long()])
        a = torch.cat([a[:, -T + 1:] if not training else a[:, -T:], torch.zeros(B, 1, H)], 1)[:, :T]
        tokens = torch.stack([r, s, a], 2).reshape(B, 3 * T, H)[:, :3 * T - (0 if training else 1)]
    n = tokens.shape[1]
    x = tokens + t["embed.pos_global"][timesteps[:, 0, 0]][:, None] + t["embed.pos_local"][:n]
    causal = torch.ones(n, n).tril().bool()
    for i in range(L):
        p = f"blocks.{i}."
        y = F.layer_norm(x, (H,), t[p + "ln1.w"], t[p + "ln1.b"])
        q, k, v = (torch.einsum("btd,hde->bhte", y, t[p + f"attn.W_{c}"]) + t[p + f"attn.b_{c}"][:, None] for c in "QKV")
        att = (q @ k.transpose(-1, -2) / (H // h) ** 0.5).masked_fill(~causal, float("-inf")).softmax(-1)
        x = x + torch.einsum("bhte,hed->btd", att @ v, t[p + "attn.W_O"]) + t[p + "attn.b_O"]
        y = F.layer_norm(x, (H,), t[p + "ln2.w"], t[p + "ln2.b"])
        x = x + F.gelu(y @ t[p + "mlp.W_in"] + t[p + "mlp.b_in"]) @ t[p + "mlp.W_out"] + t[p + "mlp.b_out"]
    logits = F.layer_norm(x, (H,), t["ln_final.w"], t["ln_final.b"]) @ t["unembed.W_U"]
    return logits[:, 1:] if actions is None else logits[:, 1::3]


def _inputs(T, B=2, seed=0, n_actions=None):
    g = torch.Generator().manual_seed(seed)
    states = torch.randint(0, 256, (B, T, 4 * 84 * 84), generator=g).float() / 255   # the caller's /255
    actions = torch.randint(0, SIZES["vocab_size"], (B, T if n_actions is None else n_actions, 1), generator=g)
    rtgs = torch.randint(0, 90, (B, T, 1), generator=g)   # raw returns, long as the eval loop passes them
    timesteps = torch.randint(0, SIZES["max_timestep"] + 1, (B, 1, 1), generator=g)
    return states, actions, rtgs, timesteps


def test_shapes_inferred_and_canonical_forward_equals_the_reference(model, saved):
    W, cfg, notes = read_dt_atari(saved, n_head=4)
    assert {k: cfg[k] for k in ("n_layer", "n_head", "n_embd", "vocab_size", "block_size", "context_length",
                                "max_timestep", "d_head", "d_mlp", "frame_stack", "frame_size")} == dict(
        n_layer=2, n_head=4, n_embd=32, vocab_size=6, block_size=15, context_length=5, max_timestep=40, d_head=8,
        d_mlp=128, frame_stack=4, frame_size=84)
    assert cfg["rtg_scale"] == 1.0 and cfg["state_scale"] == pytest.approx(1 / 255) and cfg["action_token"] == "state"
    assert W["blocks.1.attn.W_Q"].shape == (4, 32, 8) and W["blocks.0.attn.W_O"].shape == (4, 8, 32)
    assert W["unembed.W_U"].shape == (32, 6) and W["embed.pos_global"].shape == (41, 32)
    assert all(a.dtype == np.float32 for a in W.values()) and any("tok_emb" in n for n in notes)
    with torch.no_grad():
        for T in (2, 3, 5):   # acting: 3T - 1 tokens, the last T - 1 actions (more given than used)
            s, a, r, ts = _inputs(T, seed=T, n_actions=T + 2)
            want = model(s, a, targets=None, rtgs=r, timesteps=ts)
            assert want.shape == (2, T, 6)
            np.testing.assert_allclose(canonical_forward(W, cfg, s, a, r, ts), want, atol=1e-5, rtol=0)
        s, a, r, ts = _inputs(5, seed=9)   # training: 3T tokens, targets given
        want = model(s, a, targets=a, rtgs=r, timesteps=ts)
        np.testing.assert_allclose(canonical_forward(W, cfg, s, a, r, ts, training=True), want, atol=1e-5, rtol=0)
        s, _, r, ts = _inputs(1, seed=11)   # the first step: actions=None, tokens (R_1, s_1)
        want = model(s, None, rtgs=r, timesteps=ts)
        assert want.shape == (2, 1, 6)
        np.testing.assert_allclose(canonical_forward(W, cfg, s, None, r, ts), want, atol=1e-5, rtol=0)
        # the reference is sensitive to what the importer maps: another timestep changes the logits
        other = model(s, None, rtgs=r, timesteps=(ts + 1) % (SIZES["max_timestep"] + 1))
        assert (other - want).abs().max() > 1e-3


def test_data_parallel_prefix_and_missing_masks(model):
    state = {f"module.{k}": v for k, v in _state(model).items() if not k.endswith("attn.mask")}
    W, cfg, notes = parse_state_dict(state, n_head=8)
    assert cfg["n_head"] == 8 and W["blocks.0.attn.W_K"].shape == (8, 32, 4)
    assert any("masks were not saved" in n for n in notes)


def _refused(state, match, n_head=4):
    with pytest.raises(AgentError, match=match) as err:
        parse_state_dict(state, n_head=n_head, name="ckpt.pth")
    text = str(err.value)
    assert "\n" not in text and text.startswith(("ckpt.pth", "--n-head")) and text.endswith(".")
    return text


def test_hostile_state_dicts_refused_with_one_sentence(model):
    base = _state(model)
    # a frame size the forward cannot read: a linear over 64 x 8 x 8 features
    big = dict(base, **{"state_encoder.7.weight": torch.zeros(32, 4096)})
    text = _refused(big, "implies frames of")
    assert "4x84x84" in text and f"{[f for f in range(8, 200) if conv_side(f) == 8][0]}x" in text
    _refused(dict(base, **{"state_encoder.7.weight": torch.zeros(32, 3000)}), "no square frame size")
    _refused(dict(base, **{"state_encoder.0.weight": torch.zeros(32, 3, 8, 8)}), "reads 3 channels")
    _refused({k: v for k, v in base.items() if k != "blocks.1.attn.proj.bias"}, "is missing blocks.1.attn.proj.bias")
    _refused(dict(base, **{"blocks.0.attn.extra": torch.zeros(3)}), "does not have")
    _refused(dict(base, **{"ln_f.weight": torch.zeros(33)}), r"ln_f.weight has shape \(33,\)")
    _refused(dict(base, **{"pos_emb": torch.zeros(1, 15, 32)}), "not 3 x a context length")
    _refused(dict(base, **{"global_pos_emb": torch.zeros(2, 41, 32)}), "leading 1")
    gap = {k.replace("blocks.1.", "blocks.2."): v for k, v in base.items()}
    _refused(gap, "numbers its transformer blocks 0, 2")
    nan = dict(base, **{"blocks.0.mlp.0.weight": torch.full((128, 32), float("nan"))})
    _refused(nan, "NaN")
    _refused(dict(base, **{"blocks.0.attn.mask": torch.ones(1, 1, 16, 16)}), "not the causal")
    _refused(dict(base, **{"blocks.0.attn.mask": torch.ones(1, 1, 10, 10)}), "not the \\(1, 1, 16, 16\\)")
    _refused({"head.weight": torch.zeros(6, 32)}, "has no state_encoder.0.weight")
    for bad in (3, 0, 64, True):
        _refused(base, "does not divide", n_head=bad)


def test_files_that_are_not_state_dicts(tmp_path, model):
    nested = tmp_path / "nested.pth"
    torch.save({"model": model.state_dict()}, nested)
    with pytest.raises(AgentError, match="not a state dict|a state dict maps names to tensors"):
        read_dt_atari(nested, n_head=4)
    text = tmp_path / "text.pth"
    text.write_bytes(b"not a zip")
    with pytest.raises(AgentError, match="zip format"):
        read_dt_atari(text, n_head=4)


def test_the_environment_a_converted_agent_acts_in(model):
    from models.dt_atari_import import check_env

    _, cfg, _ = parse_state_dict(_state(model), n_head=4)   # 6 actions: Qbert, Pong or Seaquest, not Breakout
    assert check_env(cfg, "qbert") == "seqlens/DTAtari-Qbert-v0"
    assert check_env(cfg, "ALE/Pong-v5") == check_env(cfg, "seqlens/DTAtari-Pong-v0") == "seqlens/DTAtari-Pong-v0"
    for env_id, sentence in [
        ("breakout", "seqlens/DTAtari-Breakout-v0 has 4 actions but the checkpoint's action head scores 6"),
        ("CartPole-v1", "'CartPole-v1' is not an Atari environment"),
        ("MiniGrid-MemoryS7FixedStart-v0", "is not an Atari environment"),
        ("ALE/Tetris-v5", "is not one of the DT paper's games"),
        ("ALE/NoSuchGame-v5", "is not an Atari game ale-py knows"),
        ("envs.atari:registered", "names a module to import"),
    ]:
        with pytest.raises(AgentError, match=sentence) as err:
            check_env(cfg, env_id)
        assert "\n" not in str(err.value) and str(err.value).startswith("--env")
