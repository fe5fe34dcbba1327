"""Reading the DT paper's Atari checkpoints (kzl/decision-transformer `atari/mingpt/model_atari.py`, class `GPT`):
a bare state dict saved with torch.save, read through models/pt_reader.py (weights only, never torch.load; the
command line only, like every pickle seqlens reads).

`read_dt_atari(path, n_head=...)` infers the model's sizes from the tensors' shapes, checks every tensor against
them, and returns `(tensors, config, notes)`: numpy float32 arrays under the canonical (TransformerLens-style) names
below, the inferred config, and one-sentence remarks. Every failure is an AgentError with one sentence.

Inferred from shapes: n_layer (the `blocks.{i}` indices), n_embd and vocab_size (`head.weight`), block_size
(`pos_emb` has block_size + 1 rows; context length K = block_size / 3), max_timestep (`global_pos_emb` has
max_timestep + 1 rows), the frame stack and frame size the conv stack reads. Not inferable: n_head (key, query and
value are n_embd x n_embd whatever the split into heads), so it is a required argument (`--n-head`; the paper's
run_dt_atari.py used n_layer 6, n_head 8, n_embd 128). The model type is not inferable either ("naive", the paper's
behaviour-cloning ablation, has the same tensors): read as the DT ("reward_conditioned").

Mapping (kzl name -> canonical name, shape; H = n_embd, h = n_head, d = H / h, V = vocab_size, B = block_size):
| kzl | canonical | shape / how |
|---|---|---|
| `state_encoder.0.weight`, `.bias` | `embed.state.conv0.weight`, `.bias` | (32, 4, 8, 8), stride 4 |
| `state_encoder.2.weight`, `.bias` | `embed.state.conv1.weight`, `.bias` | (64, 32, 4, 4), stride 2 |
| `state_encoder.4.weight`, `.bias` | `embed.state.conv2.weight`, `.bias` | (64, 64, 3, 3), stride 1 |
| `state_encoder.7.weight`, `.bias` | `embed.state.W`, `embed.state.b` | W = weight.T (3136, H); then Tanh |
| `ret_emb.0.weight`, `.bias` | `embed.return.W`, `embed.return.b` | W = weight.T (1, H); then Tanh |
| `action_embeddings.0.weight` | `embed.action.W_E` | (V, H); then Tanh |
| `pos_emb` | `embed.pos_local` | pos_emb[0] (B + 1, H): by token index in the window |
| `global_pos_emb` | `embed.pos_global` | global_pos_emb[0] (max_timestep + 1, H): one timestep per window |
| `blocks.{i}.ln1.weight`, `.bias` | `blocks.{i}.ln1.w`, `.b` | (H,) |
| `blocks.{i}.attn.query.weight`, `.bias` | `blocks.{i}.attn.W_Q`, `b_Q` | weight.T.reshape(H, h, d).transpose(1, 0, 2) (h, H, d); bias (h, d) |
| `blocks.{i}.attn.key.*`, `value.*` | `W_K`, `b_K`, `W_V`, `b_V` | as W_Q |
| `blocks.{i}.attn.proj.weight`, `.bias` | `blocks.{i}.attn.W_O`, `b_O` | weight.T.reshape(h, d, H) (h, d, H); bias (H,) |
| `blocks.{i}.ln2.weight`, `.bias` | `blocks.{i}.ln2.w`, `.b` | (H,) |
| `blocks.{i}.mlp.0.weight`, `.bias` | `blocks.{i}.mlp.W_in`, `b_in` | weight.T (H, 4H); GELU (erf) |
| `blocks.{i}.mlp.2.weight`, `.bias` | `blocks.{i}.mlp.W_out`, `b_out` | weight.T (4H, H) |
| `ln_f.weight`, `.bias` | `ln_final.w`, `ln_final.b` | (H,) |
| `head.weight` | `unembed.W_U` | weight.T (H, V); no bias |
| `tok_emb.weight` | (dropped) | never read by the forward |
| `blocks.{i}.attn.mask` | (dropped) | checked to be the causal mask of B + 1 tokens |
A `module.` prefix on every name (a model saved from torch.nn.DataParallel) is removed first.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from .errors import AgentError

FRAME, STACK = 84, 4                      # model_atari.py's forward reshapes states to (-1, 4, 84, 84)
CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))   # (out channels, kernel, stride) of the state encoder's convs
PAPER_SIZES = {"n_layer": 6, "n_head": 8, "n_embd": 128}   # run_dt_atari.py
_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
_BLOCK_PARTS = ("ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "attn.key.weight", "attn.key.bias",
                "attn.query.weight", "attn.query.bias", "attn.value.weight", "attn.value.bias", "attn.proj.weight",
                "attn.proj.bias", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias")


def conv_side(frame: int) -> int:
    """The side of the state encoder's last feature map for a square frame of this side (0 if too small)."""
    side = frame
    for _, kernel, stride in CONVS:
        if side < kernel:
            return 0
        side = (side - kernel) // stride + 1
    return side


def expected_shapes(n_layer: int, n_embd: int, vocab: int, block_size: int, max_timestep: int) -> dict[str, tuple]:
    """Every tensor of a GPT with these sizes (the masks apart), as model_atari.py builds it."""
    H, side = n_embd, conv_side(FRAME)
    shapes = {"tok_emb.weight": (vocab, H), "pos_emb": (1, block_size + 1, H),
              "global_pos_emb": (1, max_timestep + 1, H), "ln_f.weight": (H,), "ln_f.bias": (H,),
              "head.weight": (vocab, H), "ret_emb.0.weight": (H, 1), "ret_emb.0.bias": (H,),
              "action_embeddings.0.weight": (vocab, H),
              "state_encoder.7.weight": (H, CONVS[-1][0] * side * side), "state_encoder.7.bias": (H,)}
    channels = STACK
    for index, (out, kernel, _) in zip((0, 2, 4), CONVS):
        shapes[f"state_encoder.{index}.weight"] = (out, channels, kernel, kernel)
        shapes[f"state_encoder.{index}.bias"] = (out,)
        channels = out
    for i in range(n_layer):
        for part in _BLOCK_PARTS:
            rows = 4 * H if part.startswith("mlp.0") else H
            cols = 4 * H if part == "mlp.2.weight" else H
            shapes[f"blocks.{i}.{part}"] = (rows, cols) if part.endswith("weight") and not part.startswith("ln") else (rows,)
    return shapes


def _shape(state: dict, key: str, name: str, ndim: int) -> tuple:
    if key not in state:
        raise AgentError(f"{name} has no {key}, so it is not a state dict of the DT paper's Atari GPT (model_atari.py).")
    shape = tuple(state[key].shape)
    if len(shape) != ndim or min(shape, default=1) < 1:
        raise AgentError(f"{name}: {key} has shape {shape}, not the {ndim}-d tensor model_atari.py's GPT saves.")
    return shape


def _check_encoder(state: dict, name: str) -> None:
    first = _shape(state, "state_encoder.0.weight", name, 4)
    if first[1] != STACK:
        raise AgentError(f"{name}: state_encoder.0.weight reads {first[1]} channels, but the DT paper's Atari model "
                         f"reads a stack of {STACK} frames (its forward reshapes states to (-1, 4, 84, 84)).")
    features = _shape(state, "state_encoder.7.weight", name, 2)[1]
    want = CONVS[-1][0] * conv_side(FRAME) ** 2
    if features != want:
        side = math.isqrt(features // CONVS[-1][0]) if features % CONVS[-1][0] == 0 else 0
        implied = ([f for f in range(8, 1025) if conv_side(f) == side] if side * side * CONVS[-1][0] == features else [])
        frames = f"frames of {implied[0]}x{implied[0]} to {implied[-1]}x{implied[-1]}" if implied else "no square frame size"
        raise AgentError(f"{name}: state_encoder.7.weight reads {features} features, which implies {frames}, but the "
                         f"model's forward reshapes every state to 4x{FRAME}x{FRAME} frames ({want} features).")


def _infer(state: dict, name: str) -> dict:
    vocab, n_embd = _shape(state, "head.weight", name, 2)
    pos = _shape(state, "pos_emb", name, 3)
    glob = _shape(state, "global_pos_emb", name, 3)
    if pos[0] != 1 or glob[0] != 1:
        raise AgentError(f"{name}: pos_emb {pos} and global_pos_emb {glob} must have a leading 1, as model_atari.py's do.")
    block_size, max_timestep = pos[1] - 1, glob[1] - 1
    if block_size < 3 or block_size % 3:
        raise AgentError(f"{name}: pos_emb has {pos[1]} rows, so a block size of {block_size}, which is not 3 x a "
                         "context length (the DT reads return, state and action tokens per step).")
    layers = sorted({int(m.group(1)) for k in state if (m := _BLOCK.fullmatch(k))})
    if not layers or layers != list(range(len(layers))):
        shown = ", ".join(map(str, layers[:6])) or "none"
        raise AgentError(f"{name} numbers its transformer blocks {shown}; model_atari.py's GPT numbers them 0, 1, 2, ... "
                         "without gaps.")
    return {"n_layer": len(layers), "n_embd": n_embd, "vocab_size": vocab, "block_size": block_size,
            "context_length": block_size // 3, "max_timestep": max_timestep}


def _check_mask(mask: np.ndarray, key: str, block_size: int, name: str) -> None:
    n = block_size + 1
    if mask.shape != (1, 1, n, n):
        raise AgentError(f"{name}: {key} has shape {mask.shape}, not the (1, 1, {n}, {n}) causal mask the block size implies.")
    if not np.array_equal(mask[0, 0], np.tril(np.ones((n, n), mask.dtype))):
        raise AgentError(f"{name}: {key} is not the causal (lower-triangular ones) mask model_atari.py builds.")


def _canonical(arrays: dict, cfg: dict) -> dict[str, np.ndarray]:
    H, h = cfg["n_embd"], cfg["n_head"]
    d = H // h
    out = {}
    for kzl, canon in ((0, 0), (2, 1), (4, 2)):
        out[f"embed.state.conv{canon}.weight"] = arrays[f"state_encoder.{kzl}.weight"]
        out[f"embed.state.conv{canon}.bias"] = arrays[f"state_encoder.{kzl}.bias"]
    out["embed.state.W"], out["embed.state.b"] = arrays["state_encoder.7.weight"].T, arrays["state_encoder.7.bias"]
    out["embed.return.W"], out["embed.return.b"] = arrays["ret_emb.0.weight"].T, arrays["ret_emb.0.bias"]
    out["embed.action.W_E"] = arrays["action_embeddings.0.weight"]
    out["embed.pos_local"], out["embed.pos_global"] = arrays["pos_emb"][0], arrays["global_pos_emb"][0]
    for i in range(cfg["n_layer"]):
        p, q = f"blocks.{i}.", f"blocks.{i}."
        for ln in ("ln1", "ln2"):
            out[q + f"{ln}.w"], out[q + f"{ln}.b"] = arrays[p + f"{ln}.weight"], arrays[p + f"{ln}.bias"]
        for src, letter in (("query", "Q"), ("key", "K"), ("value", "V")):
            out[q + f"attn.W_{letter}"] = arrays[p + f"attn.{src}.weight"].T.reshape(H, h, d).transpose(1, 0, 2)
            out[q + f"attn.b_{letter}"] = arrays[p + f"attn.{src}.bias"].reshape(h, d)
        out[q + "attn.W_O"] = arrays[p + "attn.proj.weight"].T.reshape(h, d, H)
        out[q + "attn.b_O"] = arrays[p + "attn.proj.bias"]
        out[q + "mlp.W_in"], out[q + "mlp.b_in"] = arrays[p + "mlp.0.weight"].T, arrays[p + "mlp.0.bias"]
        out[q + "mlp.W_out"], out[q + "mlp.b_out"] = arrays[p + "mlp.2.weight"].T, arrays[p + "mlp.2.bias"]
    out["ln_final.w"], out["ln_final.b"] = arrays["ln_f.weight"], arrays["ln_f.bias"]
    out["unembed.W_U"] = arrays["head.weight"].T
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def parse_state_dict(state: dict, n_head: int, name: str = "the checkpoint") -> tuple[dict, dict, list[str]]:
    """A {name: tensor or array} state dict of model_atari.py's GPT -> (canonical tensors, config, notes); see the
    module docstring. AgentError (one sentence) for anything else."""
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    _check_encoder(state, name)
    cfg = _infer(state, name)
    if not isinstance(n_head, int) or isinstance(n_head, bool) or not 1 <= n_head <= cfg["n_embd"] \
            or cfg["n_embd"] % n_head:
        raise AgentError(f"--n-head {n_head!r} does not divide the checkpoint's n_embd of {cfg['n_embd']} (the paper "
                         f"used {PAPER_SIZES['n_head']} heads with n_embd {PAPER_SIZES['n_embd']}).")
    want = expected_shapes(cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"], cfg["block_size"], cfg["max_timestep"])
    masks = {f"blocks.{i}.attn.mask" for i in range(cfg["n_layer"])}
    unexpected = sorted(set(state) - set(want) - masks)
    if unexpected:
        shown = ", ".join(k if len(k) <= 60 else k[:57] + "..." for k in unexpected[:3])
        raise AgentError(f"{name} has tensors model_atari.py's GPT does not have ({shown}); it is not that model's state dict.")
    missing = sorted(set(want) - set(state))
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise AgentError(f"{name} is missing {', '.join(missing[:3])}{more} for a {cfg['n_layer']}-layer model_atari.py GPT.")
    arrays = {}
    for key, value in state.items():
        array = value.detach().cpu().float().numpy() if hasattr(value, "detach") else np.asarray(value, dtype=np.float32)
        if key in masks:
            _check_mask(array, key, cfg["block_size"], name)
            continue
        if tuple(array.shape) != want[key]:
            raise AgentError(f"{name}: {key} has shape {tuple(array.shape)} but the other tensors imply {want[key]} "
                             f"(n_embd {cfg['n_embd']}, vocabulary {cfg['vocab_size']}, block size {cfg['block_size']}).")
        if not np.isfinite(array).all():
            raise AgentError(f"{name}: {key} holds NaN or infinite values.")
        arrays[key] = array
    cfg.update(n_head=n_head, d_head=cfg["n_embd"] // n_head, d_mlp=4 * cfg["n_embd"], frame_stack=STACK, frame_size=FRAME,
               model_type="reward_conditioned", activation="gelu (erf)", layer_norm_eps=1e-5, state_scale=1 / 255,
               rtg_scale=1.0, action_token="state")
    notes = ["tok_emb.weight is dropped: model_atari.py's forward never reads it."]
    if not masks & set(state):
        notes.append("The causal masks were not saved; the importer's model builds them.")
    return _canonical(arrays, cfg), cfg, notes


def read_dt_atari(path, n_head: int, name: str | None = None) -> tuple[dict, dict, list[str]]:
    """A torch.save'd state dict of the DT paper's Atari GPT (command line only) -> (canonical tensors, config,
    notes). n_head must be given: shapes do not say it (the paper used 8)."""
    from .pt_reader import read_state_dict

    name = name or Path(path).name
    return parse_state_dict(read_state_dict(path, name), n_head, name)


def check_env(cfg: dict, env_id: str, name: str = "--env") -> str:
    """The registered id a converted DT-Atari agent acts in (`convert-agent --from dt-atari FILE --env ID`): one of
    the DT paper's four games with its preprocessing (`seqlens/DTAtari-<Game>-v0`; 'breakout' and 'ALE/Breakout-v5'
    name it too) whose minimal action set holds the checkpoint's vocabulary. AgentError (one sentence) otherwise."""
    import envs

    from .env_choice import ATARI, env_family

    text = str(env_id).strip()
    shown = text if len(text) <= 60 else text[:57] + "..."
    if ":" in text:
        raise AgentError(f"{name} {shown!r} names a module to import; give a registered id such as 'breakout' or "
                         "'seqlens/DTAtari-Breakout-v0'.")
    try:
        text = envs.resolve_env_id(text)
    except ValueError:
        pass
    if env_family(text) != ATARI:
        raise AgentError(f"{name} {shown!r} is not an Atari environment, and a DT-Atari checkpoint reads 4x84x84 frame "
                         "stacks (give breakout, qbert, pong or seaquest).")
    if text.startswith("ALE/"):
        from envs.atari import game_of

        try:
            game = game_of(text)
        except ValueError as e:
            raise AgentError(f"{name}: {e}") from None
        text = f"seqlens/DTAtari-{game}-v0"
    if text not in {f"seqlens/DTAtari-{game}-v0" for game in envs.ATARI_GAMES}:
        raise AgentError(f"{name} {shown!r} is not one of the DT paper's games seqlens makes with its preprocessing "
                         f"({', '.join(envs.ATARI_GAMES)}).")
    n = int(envs.env_spaces(text)[1].n)
    if cfg["vocab_size"] > n:
        raise AgentError(f"{name} {text} has {n} actions but the checkpoint's action head scores {cfg['vocab_size']}, "
                         "so it was trained on another game.")
    return text
