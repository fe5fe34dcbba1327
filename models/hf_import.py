"""Import a Hugging Face `DecisionTransformerModel.save_pretrained` directory as a seqlens DecisionTransformer.

Reads config.json and model.safetensors (or a sharded model.safetensors.index.json) with json + safetensors
only: transformers is never imported. What HF's implementation does that a native model does not, matched
behind hparams switches:
- HF's GPT-2 encoder adds its position embedding wpe with position_ids = 0 for every token, i.e. the
  constant vector wpe[0]: kept as `wpe` (hf_wpe=True). No position-in-window information reaches the model.
- plain causal attention over whatever window is fed (banded=False); rollouts recompute the last K steps.
- the encoder's layer norms use config.layer_norm_epsilon; embed_ln is a default nn.LayerNorm (eps 1e-5).
- Conv1D weights are stored [in, out]; ours are nn.Linear [out, in] (transposed here).
- the action head is Sequential(Linear, Tanh) when action_tanh (keys predict_action.0.*).
The value head and the "unknown return" embedding do not exist in HF models: they stay untrained
(card()["hf_import"] says where the model came from).

Context length and RTG scale are not in HF's config. Defaults: K = 20 and rtg_scale = 1000, what HF's
Gym (Hopper/HalfCheetah/Walker2d) Decision Transformers and the original paper's MuJoCo runs use. HF
models carry no state normalisation either: set config.state_mean / state_std to the training data's
statistics, or the agent sees raw observations.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .base import AgentConfig
from .decision_transformer import _ACTIVATIONS, DecisionTransformer

_PREFIXES = ("", "decision_transformer.")


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.exists():
        return load_file(str(single))
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        out = {}
        for f in files:
            out.update(load_file(str(path / f)))
        return out
    if (path / "pytorch_model.bin").exists():
        raise ValueError(f"{path} holds pytorch_model.bin, a pickle; seqlens reads only model.safetensors. "
                         "Convert it once with transformers: DecisionTransformerModel.from_pretrained(dir)"
                         ".save_pretrained(dir) writes model.safetensors.")
    raise ValueError(f"{path} has no model.safetensors (expected a DecisionTransformerModel.save_pretrained directory).")


def load_hf_decision_transformer(path, context_length: int = 20, rtg_scale: float = 1000.0,
                                 max_ep_len: int | None = None) -> DecisionTransformer:
    """An HF DecisionTransformerModel directory -> DecisionTransformer (continuous actions, eval mode).

    max_ep_len: None keeps HF's timestep table; a smaller value keeps its first rows (later steps clip).
    """
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise ValueError(f"{path} has no config.json (expected a DecisionTransformerModel.save_pretrained directory).")
    hf = json.loads(cfg_file.read_text())
    if hf.get("model_type") != "decision_transformer":
        raise ValueError(f"{cfg_file} has model_type '{hf.get('model_type')}', expected 'decision_transformer'.")
    for key in ("state_dim", "act_dim", "hidden_size", "n_layer", "n_head", "max_ep_len"):
        if key not in hf:
            raise ValueError(f"{cfg_file} lacks '{key}', which a Decision Transformer config must give.")
    act = hf.get("activation_function", "relu")
    if act not in _ACTIVATIONS:
        raise ValueError(f"{cfg_file}: activation_function '{act}' is not supported (supported: {', '.join(_ACTIVATIONS)}).")
    hf_len = int(hf["max_ep_len"])
    if max_ep_len is not None and not 1 <= max_ep_len <= hf_len:
        raise ValueError(f"max_ep_len {max_ep_len} must be between 1 and the model's timestep table size {hf_len}.")
    hidden = int(hf["hidden_size"])
    config = AgentConfig(
        kind="dt", obs_dim=int(hf["state_dim"]), act_dim=int(hf["act_dim"]), discrete=False,
        context_length=int(context_length), max_ep_len=int(max_ep_len or hf_len), rtg_scale=float(rtg_scale),
        hparams={"hidden": hidden, "n_layer": int(hf["n_layer"]), "n_head": int(hf["n_head"]),
                 "n_inner": hf.get("n_inner") or 4 * hidden, "dropout": float(hf.get("resid_pdrop", 0.1)),
                 "activation": act, "layer_norm_eps": float(hf.get("layer_norm_epsilon", 1e-5)),
                 "action_tanh": bool(hf.get("action_tanh", True)), "banded": False, "hf_wpe": True,
                 "scale_attn_weights": bool(hf.get("scale_attn_weights", True)),
                 "scale_attn_by_inverse_layer_idx": bool(hf.get("scale_attn_by_inverse_layer_idx", False)),
                 "hf_import": str(path)})
    # reorder_and_upcast_attn only changes where the scale is applied and the dtype of the softmax: the same
    # numbers in float32, so it needs no switch here.
    model = DecisionTransformer(config)
    tensors = _read_tensors(path)
    prefix = next((p for p in _PREFIXES if f"{p}embed_state.weight" in tensors), "")

    own = dict(model.named_parameters())
    state = {}

    def put(name: str, hf_name: str | None = None, transpose: bool = False, rows=None) -> None:
        """Copy HF tensor hf_name into our parameter name, checking the shape against config.json."""
        key = prefix + (hf_name or name)
        if key not in tensors:
            raise ValueError(f"{path}: the weights lack tensor '{key}' (is this a DecisionTransformerModel checkpoint?).")
        t = tensors[key].float()
        t = t.t() if transpose and t.dim() == 2 else t
        t = t[rows] if rows is not None and t.dim() == 2 else t
        want = tuple(own[name].shape)
        if tuple(t.shape) != want:
            if rows is None:
                implied = str(want[::-1] if transpose else want)
            else:   # embed_timestep keeps its first max_ep_len rows, wpe its row 0
                implied = f"({want[0]} or more, {hidden})" if len(want) == 2 else f"(n_positions, {hidden})"
            raise ValueError(f"{path}: tensor '{key}' has shape {tuple(tensors[key].shape)}, but config.json "
                             f"(state_dim {config.obs_dim}, act_dim {config.act_dim}, hidden_size {hidden}, "
                             f"max_ep_len {config.max_ep_len}) implies {implied}.")
        state[name] = t

    for name in ("embed_return", "embed_state", "embed_action", "embed_ln", "predict_state", "predict_return",
                 "encoder.ln_f"):
        put(f"{name}.weight"), put(f"{name}.bias")
    put("embed_timestep.weight", rows=slice(0, config.max_ep_len))
    head = "predict_action.0" if prefix + "predict_action.0.weight" in tensors else "predict_action"
    put("predict_action.weight", f"{head}.weight"), put("predict_action.bias", f"{head}.bias")
    put("wpe", "encoder.wpe.weight", rows=0)   # HF feeds position_ids = 0 to every token
    for i in range(config.hparams["n_layer"]):
        h = f"encoder.h.{i}."
        for ln in ("ln_1", "ln_2"):
            put(h + ln + ".weight"), put(h + ln + ".bias")
        for lin in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            put(h + lin + ".weight", transpose=True), put(h + lin + ".bias")   # Conv1D stores [in, out]
    extra = sorted(k for k in tensors if k.startswith(prefix + f"encoder.h.{config.hparams['n_layer']}."))
    if extra:
        raise ValueError(f"{path}: the weights have more layers than config.json's n_layer "
                         f"{config.hparams['n_layer']} (found '{extra[0]}').")
    missing = model.load_state_dict(state, strict=False).missing_keys
    untrained = {"return_unknown", "predict_value.weight", "predict_value.bias"}
    if set(missing) - untrained:
        raise ValueError(f"{path}: no HF tensor maps to {sorted(set(missing) - untrained)}.")
    with torch.no_grad():  # heads HF lacks start at zero, so an import is deterministic
        for name, p in model.named_parameters():
            if name in untrained:
                p.zero_()
    return model.eval()
