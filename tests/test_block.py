"""The one transformer block (models/block.py) shared by DT and TT: one class, one set of names, weight accessors
that are views of the parameters and compute what the forward computes, typed configs, TT checkpoints' tensor
names, and the model modules' import directions (issue 22, item 2)."""
import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from models import load_agent, save_agent
from models.block import Attention, Block
from models.configs import DTConfig, TTConfig
from models.hparams import resolve
from test_activations import dt_inputs, make_dt, make_tt

ROOT = Path(__file__).resolve().parent.parent


def _shares_storage(view: torch.Tensor, param: torch.Tensor) -> bool:
    return view.untyped_storage().data_ptr() == param.untyped_storage().data_ptr()


def test_one_block_class_and_one_set_of_names():
    dt, (tt, _) = make_dt(), make_tt()
    for m in (dt, tt):
        assert all(type(b) is Block for b in m.blocks) and len(m.blocks) == m.n_layer
        assert {n.split(".", 2)[2] for n in m.activation_names() if n.startswith("blocks.0.")} == {
            "resid_pre", "attn.pattern", "attn.head_out", "attn.out", "resid_mid", "mlp.hidden", "mlp.out", "resid_post"}
    names = lambda m: sorted(n.split(".", 1)[1] for n, _ in m.blocks[0].named_parameters(prefix="0"))  # noqa: E731
    assert names(dt) == names(tt) == sorted(["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                                             "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                                             "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"])
    assert dt.ln_final is dt.encoder["ln_f"] and tt.ln_final is tt.ln_f


@pytest.mark.parametrize("which", ["dt", "tt"])
def test_accessors_are_views_with_transformer_lens_shapes(which):
    m = make_dt() if which == "dt" else make_tt()[0]
    attn, mlp = m.blocks[1].attn, m.blocks[1].mlp
    C, h = attn.hidden, attn.n_head
    d = C // h
    shapes = {"W_Q": (h, C, d), "W_K": (h, C, d), "W_V": (h, C, d), "b_Q": (h, d), "b_K": (h, d), "b_V": (h, d),
              "W_O": (h, d, C), "b_O": (C,)}
    for name, shape in shapes.items():
        t = getattr(attn, name)
        assert tuple(t.shape) == shape, name
        assert _shares_storage(t, attn.c_attn.weight if name.startswith("W_") and name != "W_O" else
                               attn.c_attn.bias if name.startswith("b_") and name != "b_O" else
                               attn.c_proj.weight if name == "W_O" else attn.c_proj.bias), name
    assert _shares_storage(mlp.W_in, mlp.c_fc.weight) and _shares_storage(mlp.W_out, mlp.c_proj.weight)
    assert tuple(mlp.W_in.shape) == (C, mlp.c_fc.out_features) and tuple(mlp.W_out.shape) == (mlp.c_fc.out_features, C)
    if which == "dt":
        for out in ("action", "return", "state", "value"):
            assert _shares_storage(m.W_U(out), m.output_head(out).weight) and m.b_U(out) is m.output_head(out).bias
        with pytest.raises(ValueError, match="output must be one of"):
            m.W_U("logits")
    else:
        assert m.W_U is m.head_w and m.b_U is m.head_b


@torch.no_grad()
@pytest.mark.parametrize("which", ["dt", "tt"])
def test_accessors_reproduce_the_blocks_activations(which):
    """q, k, v, the pattern, each head's output and the MLP from W_Q / W_K / W_V / W_O / W_in / W_out alone."""
    if which == "dt":
        m = make_dt(banded=False)
        inp = dt_inputs(m, pad=False)
    else:
        m, inp = make_tt()
    m.double()
    inp = {k: v.double() if v.is_floating_point() else v for k, v in inp.items()} if isinstance(inp, dict) else inp
    _, c = m.run_with_cache(inp)
    for i, block in enumerate(m.blocks):
        p, attn, mlp = f"blocks.{i}.", block.attn, block.mlp
        x = block.ln_1(c[p + "resid_pre"])                                        # [B, T, C]
        q = torch.einsum("btc,hcd->bhtd", x, attn.W_Q) + attn.b_Q[None, :, None]
        k = torch.einsum("btc,hcd->bhtd", x, attn.W_K) + attn.b_K[None, :, None]
        v = torch.einsum("btc,hcd->bhtd", x, attn.W_V) + attn.b_V[None, :, None]
        T = x.shape[1]
        scores = (q @ k.transpose(-1, -2)) / np.sqrt(q.shape[-1])
        pattern = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf")).softmax(-1)
        np.testing.assert_allclose(pattern.numpy(), c[p + "attn.pattern"].numpy(), atol=1e-10)
        head_out = torch.einsum("bhtd,hdc->bthc", pattern @ v, attn.W_O)
        np.testing.assert_allclose(head_out.numpy(), c[p + "attn.head_out"].numpy(), atol=1e-10)
        np.testing.assert_allclose((head_out.sum(2) + attn.b_O).numpy(), c[p + "attn.out"].numpy(), atol=1e-10)
        hidden = mlp.act(block.ln_2(c[p + "resid_mid"]) @ mlp.W_in + mlp.b_in)
        np.testing.assert_allclose(hidden.numpy(), c[p + "mlp.hidden"].numpy(), atol=1e-10)
        np.testing.assert_allclose((hidden @ mlp.W_out + mlp.b_out).numpy(), c[p + "mlp.out"].numpy(), atol=1e-10)
    if which == "dt":   # the action head as an unembedding of ln_final's output at the s_t tokens
        h = c["ln_final.out"][:, 1::3]
        np.testing.assert_allclose((h @ m.W_U("action") + m.b_U("action")).numpy(), c["head.action"].numpy(), atol=1e-10)


def test_typed_configs_hold_what_the_checkpoint_records():
    dt = make_dt()
    assert isinstance(dt.cfg, DTConfig) and dt.cfg.n_inner == 4 * 32 and dt.cfg.train_window == dt.context_length
    assert dt.config.hparams == {**resolve("dt", {"hidden": 32, "n_layer": 3, "n_head": 2, "banded": True}),
                                 "n_inner": 128, "train_window": 4}
    assert dt.hp is dt.config.hparams and dt.cfg.band == dt.band == 4
    tt, _ = make_tt()
    assert isinstance(tt.cfg, TTConfig) and tt.cfg.discretizer == tt.hp["discretizer"] and tt.n_head == tt.hp["n_head"]
    with pytest.raises(ValueError, match="must be divisible by n_head"):
        make_dt(n_head=3)


def test_tt_checkpoints_keep_their_tensor_names(tmp_path):
    tt, tokens = make_tt()
    state = tt.state_dict()
    assert "blocks.0.attn.qkv.weight" in state and "blocks.0.mlp.2.bias" in state and "blocks.0.ln1.weight" in state
    assert not any(".c_attn." in k or ".ln_1." in k for k in state)
    shipped = load_agent(ROOT / "sample_data" / "agents" / "pendulum-tt")
    from safetensors import safe_open

    with safe_open(str(ROOT / "sample_data" / "agents" / "pendulum-tt" / "model.safetensors"), "pt") as f:
        assert sorted(f.keys()) == sorted(shipped.state_dict())
    back = load_agent(save_agent(tt, tmp_path / "tt"))
    with torch.no_grad():
        assert torch.equal(back.eval()(tokens).logits, tt.eval()(tokens).logits)
    # the model's own names load too (a state dict taken from named_parameters)
    other, _ = make_tt()
    other.load_state_dict({n: p.detach() + 1 for n, p in tt.named_parameters()})
    assert torch.equal(other.blocks[0].attn.c_attn.weight, tt.blocks[0].attn.c_attn.weight + 1)


def test_model_modules_import_one_way():
    """The model imports its planner / rollout / partial forwards; they never import the model (not even for types)."""
    for part, model in (("tt_planner", "trajectory_transformer"), ("dt_rollout", "decision_transformer"),
                        ("dt_partial", "decision_transformer"), ("block", "decision_transformer"),
                        ("block", "trajectory_transformer"), ("configs", "decision_transformer")):
        tree = ast.parse((ROOT / "models" / f"{part}.py").read_text())
        imported = {(n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(model in name for name in imported), (part, model)
    assert Attention.__module__ == "models.block"
