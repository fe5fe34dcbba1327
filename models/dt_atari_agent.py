"""The DT paper's Atari GPT (kzl/decision-transformer atari/mingpt/model_atari.py) as a seqlens DecisionTransformer.

models/dt_atari_import.py reads and checks a bare state dict and returns canonical (TransformerLens-style) tensors
and the sizes it inferred (its docstring holds the kzl -> canonical table); this module maps those onto the DT's
switches (models/hparams.py DTHparams) and parameters:
- state_encoder "atari_conv" (embed_state.0 / .2 / .4 convs, .7 Linear(3136, H)), embed_tanh (the encoder's, ret_emb's
  and action_embeddings' Tanh), embed_return = ret_emb, embed_action = the action table on one-hot actions (zero bias);
- time_embedding "window_start": embed_timestep = global_pos_emb, the window's first step's row added to every token
  (training's `timesteps[idx:idx+1]`; kzl's eval loop passes the current step instead, a mismatch of its own);
- position_embedding "tokens": wpe_tokens = pos_emb (block_size + 1 rows), counted from the window's first real step
  (kzl never pads: a short window's tokens start at row 0, and so do a left-padded window's real ones);
- no embed_ln; minGPT blocks (ln1 / attn / ln2 / mlp with exact GELU) and ln_f as ours; the head has no bias
  (predict_action's bias zero); frames are divided by 255 (state_std 255, as the paper's dataset and Env do);
- plain causal attention over the last K = block_size / 3 steps (banded false), returns-to-go unscaled (rtg_scale 1).
The return, state and value heads do not exist in the paper's model: they stay zero (untrained).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .base import AgentConfig
from .decision_transformer import DecisionTransformer
from .errors import AgentError

FRAMES = (4, 84, 84)


def atari_config(cfg: dict, source: str) -> AgentConfig:
    """The AgentConfig of an inferred model_atari.py config (models/dt_atari_import.parse_state_dict's)."""
    H, K = cfg["n_embd"], cfg["context_length"]
    obs_dim = math.prod(FRAMES)
    return AgentConfig(
        kind="dt", obs_dim=obs_dim, act_dim=1, discrete=True, n_actions=cfg["vocab_size"], context_length=K,
        max_ep_len=cfg["max_timestep"] + 1, rtg_scale=1.0, state_std=[255.0] * obs_dim,
        hparams={"hidden": H, "n_layer": cfg["n_layer"], "n_head": cfg["n_head"], "n_inner": 4 * H, "dropout": 0.0,
                 "activation": "gelu", "layer_norm_eps": 1e-5, "banded": False, "hf_wpe": False,
                 "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "hf_import": f"dt-atari:{source}",
                 "obs_shape": list(FRAMES), "state_encoder": "atari_conv", "embed_tanh": True,
                 "time_embedding": "window_start", "position_embedding": "tokens",
                 "n_positions": cfg["block_size"] + 1, "embed_ln": False},
        training={"source": "kzl/decision-transformer atari (model_atari.py GPT)"})


def atari_state(t: dict[str, np.ndarray], cfg: dict) -> dict[str, torch.Tensor]:
    """Canonical tensors (models/dt_atari_import.py) -> our parameter names."""
    T = {k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in t.items()}
    H, V = cfg["n_embd"], cfg["vocab_size"]
    out = {}
    for ours, canon in ((0, 0), (2, 1), (4, 2)):
        out[f"embed_state.{ours}.weight"], out[f"embed_state.{ours}.bias"] = (T[f"embed.state.conv{canon}.weight"],
                                                                             T[f"embed.state.conv{canon}.bias"])
    out["embed_state.7.weight"], out["embed_state.7.bias"] = T["embed.state.W"].T.contiguous(), T["embed.state.b"]
    out["embed_return.weight"], out["embed_return.bias"] = T["embed.return.W"].T.contiguous(), T["embed.return.b"]
    out["embed_action.weight"], out["embed_action.bias"] = T["embed.action.W_E"].T.contiguous(), torch.zeros(H)
    out["embed_timestep.weight"], out["wpe_tokens"] = T["embed.pos_global"], T["embed.pos_local"]
    for i in range(cfg["n_layer"]):
        p, q = f"blocks.{i}.", f"encoder.h.{i}."
        out[q + "attn.c_attn.weight"] = torch.cat([T[p + f"attn.W_{w}"].permute(0, 2, 1).reshape(H, H) for w in "QKV"])
        out[q + "attn.c_attn.bias"] = torch.cat([T[p + f"attn.b_{w}"].reshape(H) for w in "QKV"])
        out[q + "attn.c_proj.weight"] = T[p + "attn.W_O"].reshape(H, H).T.contiguous()
        out[q + "attn.c_proj.bias"] = T[p + "attn.b_O"]
        out[q + "mlp.c_fc.weight"], out[q + "mlp.c_fc.bias"] = T[p + "mlp.W_in"].T.contiguous(), T[p + "mlp.b_in"]
        out[q + "mlp.c_proj.weight"], out[q + "mlp.c_proj.bias"] = T[p + "mlp.W_out"].T.contiguous(), T[p + "mlp.b_out"]
        for ours, theirs in (("ln_1", "ln1"), ("ln_2", "ln2")):
            out[q + f"{ours}.weight"], out[q + f"{ours}.bias"] = T[p + f"{theirs}.w"], T[p + f"{theirs}.b"]
    out["encoder.ln_f.weight"], out["encoder.ln_f.bias"] = T["ln_final.w"], T["ln_final.b"]
    out["predict_action.weight"], out["predict_action.bias"] = T["unembed.W_U"].T.contiguous(), torch.zeros(V)
    obs_dim = math.prod(FRAMES)
    out.update({"predict_state.weight": torch.zeros(obs_dim, H), "predict_state.bias": torch.zeros(obs_dim),
                "predict_return.weight": torch.zeros(1, H), "predict_return.bias": torch.zeros(1),
                "predict_value.weight": torch.zeros(1, H), "predict_value.bias": torch.zeros(1),
                "return_unknown": torch.zeros(H)})
    return out


def atari_agent(tensors: dict, cfg: dict, source: str, name: str) -> DecisionTransformer:
    """A checked model_atari.py state dict (canonical tensors and config) -> DecisionTransformer in eval mode."""
    from .loading import build_meta

    config = atari_config(cfg, source)
    build_meta(config, name, cls=DecisionTransformer)   # its size checked before anything is allocated
    model = DecisionTransformer(config)
    try:
        model.load_state_dict(atari_state(tensors, cfg), strict=True)
    except (RuntimeError, KeyError) as e:
        raise AgentError(f"{name}: the Atari GPT's tensors do not map onto the model they describe "
                         f"({' '.join(str(e).split())[:120]}).") from None
    return model.eval()
