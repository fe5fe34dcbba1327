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

import math
from pathlib import Path

import torch

from .base import AgentConfig
from .config_check import MAX_CONTEXT, check_hf_config
from .decision_transformer import DecisionTransformer
from .errors import AgentError
from .loading import build_meta, read_json, shard_names
from .safetensors_header import read_header

_PREFIXES = ("", "decision_transformer.")


def _weight_files(path: Path, name: str) -> list[Path]:
    """The safetensors files of an HF directory: model.safetensors, or the shards its index names."""
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        shards = shard_names(read_json(index, f"{name}: model.safetensors.index.json"), f"{name}: model.safetensors.index.json")
        for s in shards:
            if not (path / s).is_file():
                raise AgentError(f"{name}: model.safetensors.index.json names the shard {s}, which is not beside it.")
        return [path / s for s in shards]
    if (path / "pytorch_model.bin").exists():
        raise AgentError(f"{name} holds pytorch_model.bin, a pickle; seqlens reads only model.safetensors. "
                         "Convert it once on the command line: python cli.py convert-agent --from hf DIR --out OUT.")
    raise AgentError(f"{name} has no model.safetensors (expected a DecisionTransformerModel.save_pretrained directory).")


def _meta_tensors(files: list[Path], name: str) -> dict[str, torch.Tensor]:
    """Meta tensors (no memory) of the shapes the safetensors headers declare, checked before any read."""
    out = {}
    for f in files:
        for key, info in read_header(f, f"{name}: {f.name}").items():
            if key in out:
                raise AgentError(f"{name}: tensor '{key[:60]}' appears in more than one weights file.")
            out[key] = torch.empty(info.shape, device="meta")
    return out


def _read_tensors(files: list[Path], name: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    out = {}
    for f in files:
        try:
            out.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
            raise AgentError(f"{name}: {f.name} is not a readable safetensors file ({' '.join(str(e).split())[:160]}).") from None
    return out


def load_hf_decision_transformer(path, context_length: int = 20, rtg_scale: float = 1000.0,
                                 max_ep_len: int | None = None, name: str | None = None) -> DecisionTransformer:
    """An HF DecisionTransformerModel directory -> DecisionTransformer (continuous actions, eval mode).

    max_ep_len: None keeps HF's timestep table; a smaller value keeps its first rows (later steps clip).
    name: how messages call the checkpoint (default: the path). Every failure is an AgentError (a
    ValueError) with one sentence. The config is checked field by field, the weights' headers against a
    meta-device model (no memory) and only then are the model built and the tensors read.
    """
    path = Path(path)
    name = name or str(path)
    config = hf_agent_config(path, context_length, rtg_scale, max_ep_len, name)
    files = _weight_files(path, name)
    return _build(config, _meta_tensors(files, name), lambda: _read_tensors(files, name), name)


def hf_decision_transformer_from_state(path, tensors: dict[str, torch.Tensor], context_length: int = 20,
                                       rtg_scale: float = 1000.0, max_ep_len: int | None = None,
                                       name: str | None = None) -> DecisionTransformer:
    """Like load_hf_decision_transformer, for weights already read by the caller (`cli.py convert-agent`
    reads an HF directory's pytorch_model.bin with models/pt_reader.py): config.json from `path`, the
    tensors mapped by the same code, their shapes checked on meta tensors before the model is built."""
    path = Path(path)
    name = name or str(path)
    config = hf_agent_config(path, context_length, rtg_scale, max_ep_len, name)
    meta = {k: torch.empty(tuple(v.shape), device="meta") for k, v in tensors.items()}
    return _build(config, meta, lambda: tensors, name)


def hf_agent_config(path: Path, context_length: int, rtg_scale: float, max_ep_len: int | None,
                    name: str) -> AgentConfig:
    """The AgentConfig an HF directory's config.json describes (checked field by field)."""
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise AgentError(f"{name} has no config.json (expected a DecisionTransformerModel.save_pretrained directory).")
    hf = read_json(cfg_file, f"{name}: config.json")
    if not isinstance(hf, dict):
        raise AgentError(f"{name}: config.json must hold a JSON object.")
    if hf.get("model_type") != "decision_transformer":
        raise AgentError(f"{name}: config.json has model_type '{str(hf.get('model_type'))[:40]}', expected 'decision_transformer'.")
    check_hf_config(hf, f"{name}: config.json")
    act = hf.get("activation_function", "relu")
    hf_len = hf["max_ep_len"]
    if max_ep_len is not None and not 1 <= max_ep_len <= hf_len:
        raise AgentError(f"max_ep_len {max_ep_len} must be between 1 and the model's timestep table size {hf_len}.")
    if not (isinstance(context_length, int) and 1 <= context_length <= MAX_CONTEXT):
        raise AgentError(f"context_length must be an integer between 1 and {MAX_CONTEXT}, got {context_length!r}.")
    if not (isinstance(rtg_scale, (int, float)) and math.isfinite(rtg_scale) and rtg_scale > 0):
        raise AgentError(f"rtg_scale must be a positive finite number, got {rtg_scale!r}.")
    hidden = hf["hidden_size"]
    # reorder_and_upcast_attn only changes where the scale is applied and the dtype of the softmax: the same
    # numbers in float32, so it needs no switch here.
    return AgentConfig(
        kind="dt", obs_dim=hf["state_dim"], act_dim=hf["act_dim"], discrete=False,
        context_length=int(context_length), max_ep_len=int(max_ep_len or hf_len), rtg_scale=float(rtg_scale),
        hparams={"hidden": hidden, "n_layer": hf["n_layer"], "n_head": hf["n_head"],
                 "n_inner": hf.get("n_inner") or 4 * hidden, "dropout": float(hf.get("resid_pdrop", 0.1)),
                 "activation": act, "layer_norm_eps": float(hf.get("layer_norm_epsilon", 1e-5)),
                 "action_tanh": bool(hf.get("action_tanh", True)), "banded": False, "hf_wpe": True,
                 "scale_attn_weights": bool(hf.get("scale_attn_weights", True)),
                 "scale_attn_by_inverse_layer_idx": bool(hf.get("scale_attn_by_inverse_layer_idx", False)),
                 "hf_import": str(path)})


def _build(config: AgentConfig, meta_tensors: dict[str, torch.Tensor], read, name: str) -> DecisionTransformer:
    """The whole mapping once on meta tensors (shapes only) against a meta-built model; only then the model
    built for real and `read()`'s tensors mapped and loaded."""
    meta = build_meta(config, name, cls=DecisionTransformer)
    _map_state(meta_tensors, meta, config, name)
    try:
        model = DecisionTransformer(config)
    except Exception as e:  # noqa: BLE001 - checked above; any failure still gets one sentence
        raise AgentError(f"{name}: config.json cannot build a 'dt' model ({' '.join(str(e).split())[:160]}).") from None
    state = _map_state(read(), model, config, name)
    model.load_state_dict(state, strict=False)
    with torch.no_grad():  # heads HF lacks start at zero, so an import is deterministic
        for pname, p in model.named_parameters():
            if pname in _UNTRAINED:
                p.zero_()
    return model.eval()


_UNTRAINED = {"return_unknown", "predict_value.weight", "predict_value.bias"}


def _map_state(tensors: dict[str, torch.Tensor], model: DecisionTransformer, config: AgentConfig,
               name: str) -> dict[str, torch.Tensor]:
    """HF tensors -> our parameter names, every shape checked against the model config.json implies.
    Runs on meta tensors (header shapes) and meta models as well as on real ones."""
    hidden = config.hparams["hidden"]
    prefix = next((p for p in _PREFIXES if f"{p}embed_state.weight" in tensors), "")
    own = dict(model.named_parameters())
    state = {}

    def put(pname: str, hf_name: str | None = None, transpose: bool = False, rows=None) -> None:
        """Copy HF tensor hf_name into our parameter pname, checking the shape against config.json."""
        key = prefix + (hf_name or pname)
        if key not in tensors:
            raise AgentError(f"{name}: the weights lack tensor '{key}' (is this a DecisionTransformerModel checkpoint?).")
        t = tensors[key]
        if t.dim() == 2 and rows is not None and (t.shape[0] < 1 if rows == 0 else t.shape[0] < rows.stop):
            t = None   # too few rows to take: a shape error below, not an IndexError
        else:
            t = t.float()
            t = t.t() if transpose and t.dim() == 2 else t
            t = t[rows] if rows is not None and t.dim() == 2 else t
        want = tuple(own[pname].shape)
        if t is None or tuple(t.shape) != want:
            if rows is None:
                implied = str(want[::-1] if transpose else want)
            else:   # embed_timestep keeps its first max_ep_len rows, wpe its row 0
                implied = f"({want[0]} or more, {hidden})" if len(want) == 2 else f"(n_positions, {hidden})"
            raise AgentError(f"{name}: tensor '{key}' has shape {tuple(tensors[key].shape)}, but config.json "
                             f"(state_dim {config.obs_dim}, act_dim {config.act_dim}, hidden_size {hidden}, "
                             f"max_ep_len {config.max_ep_len}) implies {implied}.")
        state[pname] = t

    for mod in ("embed_return", "embed_state", "embed_action", "embed_ln", "predict_state", "predict_return",
                "encoder.ln_f"):
        put(f"{mod}.weight"), put(f"{mod}.bias")
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
        raise AgentError(f"{name}: the weights have more layers than config.json's n_layer "
                         f"{config.hparams['n_layer']} (found '{extra[0][:60]}').")
    missing = set(own) - set(state) - _UNTRAINED
    if missing:
        raise AgentError(f"{name}: no HF tensor maps to {sorted(missing)[:3]}.")
    return state
