"""Import a CORL Decision Transformer (`algorithms/offline/dt.py`) as a seqlens DecisionTransformer.

CORL's run leaves two files in its checkpoints_path: `config.yaml` (its TrainConfig dataclass, dumped by
pyrallis: embedding_dim, num_layers, num_heads, seq_len, episode_len, max_action, reward_scale, env_name,
dropouts, ...) and `dt_checkpoint.pt` = {"model_state": state_dict, "state_mean": ndarray, "state_std":
ndarray}, a pickle read here with models/pt_reader.py (weights only, numpy float arrays allowed, nothing
else). This is for `cli.py convert-agent` only; the browser keeps refusing pickles.

What CORL's model computes, and how it maps onto ours (hparams switches, as for HF imports):
- pre-LN blocks: x + attn(norm1(x)); x + mlp(norm2(x)), mlp = Linear(H, 4H), exact GELU, Linear(4H, H)
  -> activation "gelu", n_inner 4H, LayerNorm eps 1e-5 everywhere; no position embedding (hf_wpe False).
- nn.MultiheadAttention: in_proj_weight / in_proj_bias [3H, H] (q, k, v stacked, heads split alike) ->
  attn.c_attn; out_proj -> attn.c_proj; scale 1/sqrt(H / heads). Plain causal attention over the window
  it is fed (banded False); CORL evaluates on the last seq_len steps, unpadded: context_length = seq_len.
- emb_norm -> embed_ln, out_norm -> encoder.ln_f, timestep_emb -> embed_timestep (max_ep_len =
  episode_len + seq_len rows), state_emb / return_emb -> embed_state / embed_return,
  action_head.0 -> predict_action (tanh kept).
- CORL embeds raw actions and outputs tanh * max_action; ours embeds actions mapped into [-1, 1] by the
  action bounds and maps its tanh outputs back by them. With bounds [-max_action, max_action] the two agree
  once max_action is folded into embed_action's weight (W a = (W max_action)(a / max_action)).
- CORL feeds states (s - state_mean) / state_std and returns-to-go times reward_scale: state_mean /
  state_std come from the .pt, rtg_scale = 1 / reward_scale.
The return, state and value heads and the "unknown return" embedding do not exist in CORL's model: they stay
zero (untrained); hparams.hf_import = "corl:<dir>" says where the model came from.

Every failure is an AgentError with one sentence. config.yaml is checked field by field, the state dict
against the config on meta tensors (missing keys, extra keys, shapes) before the model is built.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from trajectories.limits import ENV, human_bytes, limits

from .base import AgentConfig
from .config_check import MAX_CONTEXT, MAX_LAYERS, ConfigChecker
from .decision_transformer import DecisionTransformer
from .errors import AgentError

CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "dt_checkpoint.pt"
# the TrainConfig fields the mapping needs (pyrallis dumps every field, so a real config.yaml has them all)
REQUIRED = ("embedding_dim", "num_layers", "num_heads", "seq_len", "episode_len", "max_action", "reward_scale")
# config.yaml: a real one is ~1 KB (pyrallis dumps TrainConfig's ~30 fields); the cap is checked before parsing
CONFIG_BYTES = 64 << 10
# ranges of the TrainConfig numbers the import uses (CORL's defaults: embedding_dim 128, episode_len 1000,
# max_action 1.0, reward_scale 0.001, dropouts 0.1); anything outside is refused with a sentence
MAX_EMBEDDING = 65_536
MAX_EPISODE_LEN = 10_000_000
MAX_ACTION = (0.0, 1e6)          # (exclusive, inclusive): the action bounds are [-max_action, max_action]
REWARD_SCALE = (1e-6, 1e6)       # inclusive: rtg_scale = 1 / reward_scale
STAT_RANGE = 1e9                 # |state_mean| and state_std at most this; state_std at least STD_MIN
STD_MIN = 1e-8
# training-record numbers copied into config.json (update_steps, learning_rate, target_returns, ...): kept only
# when finite, |x| <= RECORD_MAX and lists of at most RECORD_ITEMS
RECORD_MAX = 1e15
RECORD_ITEMS = 64
_UNTRAINED = {"return_unknown", "predict_value.weight", "predict_value.bias", "predict_return.weight",
              "predict_return.bias", "predict_state.weight", "predict_state.bias"}


def is_corl_dir(path) -> bool:
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / CHECKPOINT_FILE).is_file()


def read_corl_config(path: Path, name: str) -> dict:
    """config.yaml as a dict (yaml.safe_load), its model fields checked for types and ranges."""
    import yaml

    where = f"{name}: {CONFIG_FILE}"
    file = path / CONFIG_FILE
    if not file.is_file():
        raise AgentError(f"{name} has no {CONFIG_FILE} (expected the checkpoints_path of CORL's dt.py).")
    size = file.stat().st_size
    too_big = (f"{where} is {human_bytes(size)}, over the limit of {human_bytes(CONFIG_BYTES)} for a CORL config.yaml "
               "(a real one is about 1 KB); refused without parsing it.")
    if size > CONFIG_BYTES:
        raise AgentError(too_big)
    try:
        with open(file, "rb") as f:
            data = f.read(CONFIG_BYTES + 1)   # the file may have grown since stat
        if len(data) > CONFIG_BYTES:
            raise AgentError(too_big)
        raw = yaml.load(data.decode("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))   # safe_load, in C where built
    except OSError as e:
        raise AgentError(f"{where} cannot be read ({e.strerror or type(e).__name__}).") from None
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError, ValueError) as e:
        problem, mark = getattr(e, "problem", None), getattr(e, "problem_mark", None)
        detail = " ".join(str(problem or e).split())[:120].rstrip(".")
        if mark is not None:
            detail += f" at line {mark.line + 1}, column {mark.column + 1}"
        raise AgentError(f"{where} is not valid YAML ({detail}).") from None
    if not isinstance(raw, dict):
        got = "nothing" if raw is None else f"a {type(raw).__name__}"
        raise AgentError(f"{where} must hold a mapping of CORL's TrainConfig fields, got {got}.")
    c = ConfigChecker(where)
    for key in REQUIRED:
        if key not in raw:
            c.fail(f"lacks '{key}', which CORL's TrainConfig gives")
    hidden = c.integer(raw["embedding_dim"], "embedding_dim", hi=MAX_EMBEDDING)
    heads = c.integer(raw["num_heads"], "num_heads", hi=hidden)
    if hidden % heads:
        c.fail(f"field 'embedding_dim' ({hidden}) must be divisible by 'num_heads' ({heads})")
    c.integer(raw["num_layers"], "num_layers", hi=MAX_LAYERS)
    c.integer(raw["seq_len"], "seq_len", hi=MAX_CONTEXT)
    c.integer(raw["episode_len"], "episode_len", hi=MAX_EPISODE_LEN)
    c.number(raw["max_action"], "max_action", positive=True)
    if raw["max_action"] > MAX_ACTION[1]:
        c.fail(f"field 'max_action' must be in (0, {MAX_ACTION[1]:g}], got {raw['max_action']:g} (the action bounds are "
               "[-max_action, max_action])")
    c.number(raw["reward_scale"], "reward_scale", positive=True)
    lo, hi = REWARD_SCALE
    if not lo <= raw["reward_scale"] <= hi:
        c.fail(f"field 'reward_scale' must be between {lo:g} and {hi:g}, got {raw['reward_scale']:g} (returns-to-go are "
               "multiplied by it)")
    for key in ("attention_dropout", "residual_dropout", "embedding_dropout"):
        c.number(raw.get(key), key, lo=0, hi=1, optional=True)
    env_name = c.string(raw.get("env_name"), "env_name", optional=True)
    if env_name is not None and len(env_name) > 200:
        c.fail(f"field 'env_name' is {len(env_name):,} characters long; expected a dataset name such as 'hopper-medium-v2'")
    for key in ("state_dim", "action_dim"):   # not TrainConfig fields, but written by some forks
        c.integer(raw.get(key), key, limit="features", optional=True)
    return raw


def expected_shapes(cfg: dict, state_dim: int, action_dim: int) -> dict[str, tuple[int, ...]]:
    """Every tensor of CORL's DecisionTransformer.state_dict() and the shape config.yaml implies."""
    H, L = cfg["embedding_dim"], cfg["seq_len"]
    shapes = {"emb_norm.weight": (H,), "emb_norm.bias": (H,), "out_norm.weight": (H,), "out_norm.bias": (H,),
              "timestep_emb.weight": (cfg["episode_len"] + L, H),
              "state_emb.weight": (H, state_dim), "state_emb.bias": (H,),
              "action_emb.weight": (H, action_dim), "action_emb.bias": (H,),
              "return_emb.weight": (H, 1), "return_emb.bias": (H,),
              "action_head.0.weight": (action_dim, H), "action_head.0.bias": (action_dim,)}
    for i in range(cfg["num_layers"]):
        b = f"blocks.{i}."
        shapes.update({b + "norm1.weight": (H,), b + "norm1.bias": (H,), b + "norm2.weight": (H,), b + "norm2.bias": (H,),
                       b + "attention.in_proj_weight": (3 * H, H), b + "attention.in_proj_bias": (3 * H,),
                       b + "attention.out_proj.weight": (H, H), b + "attention.out_proj.bias": (H,),
                       b + "mlp.0.weight": (4 * H, H), b + "mlp.0.bias": (4 * H,),
                       b + "mlp.2.weight": (H, 4 * H), b + "mlp.2.bias": (H,),
                       b + "causal_mask": (3 * L, 3 * L)})
    return shapes


def _implied_by(key: str, cfg: dict, state_dim: int, action_dim: int) -> str:
    """The config.yaml fields (and inferred dims) a tensor's expected shape comes from, for messages."""
    if key.startswith("timestep_emb"):
        fields = ("episode_len", "seq_len", "embedding_dim")
    elif key.endswith("causal_mask"):
        fields = ("seq_len",)
    else:
        fields = ("embedding_dim",)
    text = ", ".join(f"{f} {cfg[f]}" for f in fields)
    if key.startswith("state_emb.weight"):
        text += f"; state_dim {state_dim} from state_mean"
    return text


def _check_checkpoint(obj, cfg: dict, name: str) -> tuple[dict, np.ndarray, np.ndarray, int, int]:
    """dt_checkpoint.pt's structure and every tensor's name, dtype and shape against config.yaml (shapes
    only: works on meta tensors). Returns (model_state, state_mean, state_std, state_dim, action_dim)."""
    where = f"{name}: {CHECKPOINT_FILE}"
    if not isinstance(obj, dict):
        raise AgentError(f"{where} holds a {type(obj).__name__}; CORL's dt.py saves a dict with model_state, state_mean and state_std.")
    for key in ("model_state", "state_mean", "state_std"):
        if key not in obj:
            raise AgentError(f"{where} lacks '{key}', which CORL's dt.py saves.")
    state = obj["model_state"]
    if not isinstance(state, dict):
        raise AgentError(f"{where}: model_state is a {type(state).__name__}, not a state dict.")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise AgentError(f"{where}: model_state holds {str(key)[:60]!r} -> {type(value).__name__}; a state dict maps names to tensors.")
    stats = []
    for key in ("state_mean", "state_std"):
        v = obj[key]
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
        if not isinstance(v, np.ndarray) or v.dtype.kind != "f":
            raise AgentError(f"{where}: {key} must be a float array, got {type(v).__name__ if not isinstance(v, np.ndarray) else v.dtype}.")
        if v.ndim not in (1, 2) or (v.ndim == 2 and v.shape[0] != 1):
            raise AgentError(f"{where}: {key} has shape {v.shape}; expected (state_dim,) or (1, state_dim).")
        v = v.reshape(-1).astype(np.float64)
        if not np.isfinite(v).all():
            raise AgentError(f"{where}: {key} holds non-finite numbers.")
        if v.size and float(np.abs(v).max()) > STAT_RANGE:
            raise AgentError(f"{where}: {key} holds {float(np.abs(v).max()):g}; expected values within ±{STAT_RANGE:g}.")
        stats.append(v)
    mean, std = stats
    if mean.shape != std.shape:
        raise AgentError(f"{where}: state_mean has {mean.size} entries but state_std {std.size}.")
    if (std <= 0).any():
        raise AgentError(f"{where}: state_std must be positive, found {float(std.min()):g}.")
    if (std < STD_MIN).any():
        raise AgentError(f"{where}: state_std holds {float(std.min()):g}; expected at least {STD_MIN:g} (CORL adds 1e-6).")
    state_dim = int(mean.size)
    if not 1 <= state_dim <= limits().features:
        raise AgentError(f"{where}: state_mean has {state_dim} entries, outside 1..{limits().features} (features, set by {ENV['features']}).")
    head = state.get("action_head.0.weight")
    if head is None:
        raise AgentError(f"{where}: model_state lacks 'action_head.0.weight', which CORL's DecisionTransformer has.")
    if head.dim() != 2 or not 1 <= head.shape[0] <= limits().features:
        raise AgentError(f"{where}: 'action_head.0.weight' has shape {tuple(head.shape)}; expected (action_dim, embedding_dim "
                         f"{cfg['embedding_dim']}).")
    action_dim = int(head.shape[0])
    for key, dim in (("state_dim", state_dim), ("action_dim", action_dim)):
        if cfg.get(key) is not None and cfg[key] != dim:
            raise AgentError(f"{name}: {CONFIG_FILE} says {key} {cfg[key]} but {CHECKPOINT_FILE} implies {dim}.")
    want = expected_shapes(cfg, state_dim, action_dim)
    for key in want:
        if key not in state:
            raise AgentError(f"{where}: model_state lacks '{key}', which {CONFIG_FILE} (num_layers {cfg['num_layers']}) implies.")
    for key in state:
        if key not in want:
            raise AgentError(f"{where}: model_state has '{key[:80]}', which a CORL DecisionTransformer with this {CONFIG_FILE} "
                             f"(num_layers {cfg['num_layers']}) does not have.")
    for key, shape in want.items():
        t = state[key]
        if tuple(t.shape) != shape:
            raise AgentError(f"{where}: '{key}' has shape {tuple(t.shape)}, but {CONFIG_FILE} "
                             f"({_implied_by(key, cfg, state_dim, action_dim)}) implies {shape}.")
        if key.endswith("causal_mask"):
            if t.dtype != torch.bool:
                raise AgentError(f"{where}: '{key}' is {t.dtype}, expected a bool mask.")
        elif not t.is_floating_point():
            raise AgentError(f"{where}: '{key}' is {t.dtype}, expected floating point weights.")
    return state, mean, std, state_dim, action_dim


def _map_state(state: dict[str, torch.Tensor], model: DecisionTransformer, cfg: dict,
               name: str) -> dict[str, torch.Tensor]:
    """CORL tensors -> our parameter names (max_action folded into embed_action). Runs on meta tensors and
    a meta model as well as on real ones; every shape is checked against the model."""
    m = float(cfg["max_action"])
    pairs = {"embed_timestep.weight": "timestep_emb.weight", "embed_state.weight": "state_emb.weight",
             "embed_state.bias": "state_emb.bias", "embed_action.bias": "action_emb.bias",
             "embed_return.weight": "return_emb.weight", "embed_return.bias": "return_emb.bias",
             "embed_ln.weight": "emb_norm.weight", "embed_ln.bias": "emb_norm.bias",
             "encoder.ln_f.weight": "out_norm.weight", "encoder.ln_f.bias": "out_norm.bias",
             "predict_action.weight": "action_head.0.weight", "predict_action.bias": "action_head.0.bias"}
    for i in range(cfg["num_layers"]):
        ours, theirs = f"encoder.h.{i}.", f"blocks.{i}."
        for a, b in (("ln_1", "norm1"), ("ln_2", "norm2"), ("attn.c_proj", "attention.out_proj"),
                     ("mlp.c_fc", "mlp.0"), ("mlp.c_proj", "mlp.2")):
            pairs[f"{ours}{a}.weight"], pairs[f"{ours}{a}.bias"] = f"{theirs}{b}.weight", f"{theirs}{b}.bias"
        pairs[f"{ours}attn.c_attn.weight"] = f"{theirs}attention.in_proj_weight"
        pairs[f"{ours}attn.c_attn.bias"] = f"{theirs}attention.in_proj_bias"
    out = {pname: state[key].float() for pname, key in pairs.items()}
    out["embed_action.weight"] = state["action_emb.weight"].float() * m
    own = dict(model.named_parameters())
    for pname, t in out.items():
        if pname not in own or tuple(own[pname].shape) != tuple(t.shape):
            raise AgentError(f"{name}: CORL tensor for '{pname}' has shape {tuple(t.shape)}, but the model built from "
                             f"{CONFIG_FILE} has {tuple(own[pname].shape) if pname in own else 'no such parameter'}.")
    missing = set(own) - set(out) - _UNTRAINED
    if missing:
        raise AgentError(f"{name}: no CORL tensor maps to {sorted(missing)[:3]}.")
    return out


def _env_id(cfg: dict, config: AgentConfig, name: str) -> tuple[str | None, list[str]]:
    """config.yaml's env_name as a gymnasium id (D4RL names through trajectories.names.dataset_env_id), kept
    only when that environment's spaces fit the model; notes say what happened."""
    import envs
    from gymnasium import spaces

    from trajectories.names import dataset_env_id

    env_name = cfg.get("env_name")
    if env_name is None:
        return None, []
    shown = repr(env_name[:60])
    env_id = dataset_env_id(env_name)
    if env_id is None:
        return None, [f"{name}: env_name {shown} is not a D4RL dataset name seqlens maps to a gymnasium environment, "
                      "so the agent names none (cli.py evaluate --env ID picks one)."]
    try:
        obs_space, act_space = envs.env_spaces(env_id)
    except envs.EnvIdError:
        return None, [f"{name}: env_name {shown} maps to {env_id}, which is not registered here, so the agent names no environment."]
    except Exception as e:  # noqa: BLE001 - registered, but not makeable here (e.g. no mujoco): keep the id
        return env_id, [f"The environment {env_id} is not available here ({' '.join(str(e).split())[:120]}), so the agent "
                        "can be analysed offline but not evaluated."]
    fits = (isinstance(obs_space, spaces.Box) and tuple(obs_space.shape) == (config.obs_dim,)
            and isinstance(act_space, spaces.Box) and tuple(act_space.shape) == (config.act_dim,))
    if not fits:
        got = (f"observations {getattr(obs_space, 'shape', type(obs_space).__name__)} and actions "
               f"{getattr(act_space, 'shape', type(act_space).__name__)}")
        return None, [f"{name}: env_name {shown} maps to {env_id}, whose {got} do not fit the model's "
                      f"({config.obs_dim},) and ({config.act_dim},), so the agent names no environment."]
    return env_id, []


def _numbers(value) -> bool:
    """A finite number or a short list of them, each within ±RECORD_MAX (what config.json's training record may
    copy from config.yaml)."""
    items = value if isinstance(value, list) else [value]
    return 0 < len(items) <= RECORD_ITEMS and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= RECORD_MAX for v in items)   # NaN, inf: False


def load_corl_decision_transformer(path, name: str | None = None) -> tuple[DecisionTransformer, list[str]]:
    """A CORL dt.py checkpoints_path directory -> (DecisionTransformer in eval mode, notes).

    notes: one-sentence remarks (the environment env_name maps to, or why none)."""
    from .loading import build_meta
    from .pt_reader import read_pt

    path = Path(path)
    name = name or str(path)
    if not path.is_dir():
        raise AgentError(f"{name} is not a directory (expected CORL's checkpoints_path with {CONFIG_FILE} and {CHECKPOINT_FILE}).")
    cfg = read_corl_config(path, name)
    pt = path / CHECKPOINT_FILE
    if not pt.is_file():
        raise AgentError(f"{name} has no {CHECKPOINT_FILE} (CORL's dt.py writes it when training ends).")
    obj = read_pt(pt, f"{name}: {CHECKPOINT_FILE}", numpy_arrays=True)
    # (a) structure, names and shapes against config.yaml, on meta tensors (no memory touched)
    meta_obj = dict(obj) if isinstance(obj, dict) else obj
    if isinstance(obj, dict) and isinstance(obj.get("model_state"), dict):
        meta_obj["model_state"] = {k: (torch.empty(tuple(v.shape), dtype=v.dtype, device="meta")
                                       if isinstance(v, torch.Tensor) else v) for k, v in obj["model_state"].items()}
    _, mean, std, state_dim, action_dim = _check_checkpoint(meta_obj, cfg, name)
    hidden, m = cfg["embedding_dim"], float(cfg["max_action"])
    config = AgentConfig(
        kind="dt", obs_dim=state_dim, act_dim=action_dim, discrete=False, context_length=cfg["seq_len"],
        max_ep_len=cfg["episode_len"] + cfg["seq_len"], rtg_scale=1.0 / float(cfg["reward_scale"]),
        state_mean=[float(x) for x in mean], state_std=[float(x) for x in std],
        action_low=[-m] * action_dim, action_high=[m] * action_dim,
        hparams={"hidden": hidden, "n_layer": cfg["num_layers"], "n_head": cfg["num_heads"], "n_inner": 4 * hidden,
                 "dropout": float(cfg.get("residual_dropout") or 0.0), "activation": "gelu", "layer_norm_eps": 1e-5,
                 "action_tanh": True, "banded": False, "hf_wpe": False, "scale_attn_weights": True,
                 "scale_attn_by_inverse_layer_idx": False, "hf_import": f"corl:{path}"},
        dataset={"name": cfg["env_name"]} if isinstance(cfg.get("env_name"), str) else {},
        training={"source": "CORL algorithms/offline/dt.py",
                  **{k: cfg[k] for k in ("update_steps", "batch_size", "learning_rate", "train_seed", "target_returns")
                     if _numbers(cfg.get(k))}})
    # (b) the mapping on a meta-built model (its size checked against agent_params)
    meta = build_meta(config, name, cls=DecisionTransformer)
    _map_state(meta_obj["model_state"], meta, cfg, name)
    # (c) the causal masks CORL's blocks carry must be causal, or its outputs are not ours
    causal = ~torch.tril(torch.ones(3 * cfg["seq_len"], 3 * cfg["seq_len"], dtype=torch.bool))
    for i in range(cfg["num_layers"]):
        if not torch.equal(obj["model_state"][f"blocks.{i}.causal_mask"], causal):
            raise AgentError(f"{name}: {CHECKPOINT_FILE}'s 'blocks.{i}.causal_mask' is not CORL's causal mask, so the "
                             "model's attention would differ from what seqlens computes.")
    env_id, notes = _env_id(cfg, config, name)
    config.env_id = env_id
    # (d) only now: build, map, load
    try:
        model = DecisionTransformer(config)
    except Exception as e:  # noqa: BLE001 - checked above; any failure still gets one sentence
        raise AgentError(f"{name}: {CONFIG_FILE} cannot build a 'dt' model ({' '.join(str(e).split())[:160]}).") from None
    state = _map_state(obj["model_state"], model, cfg, name)
    model.load_state_dict(state, strict=False)
    with torch.no_grad():   # heads CORL lacks start at zero, so an import is deterministic
        for pname, p in model.named_parameters():
            if pname in _UNTRAINED:
                p.zero_()
    return model.eval(), notes
