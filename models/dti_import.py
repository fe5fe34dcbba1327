"""Import a DTI Decision Transformer (jbloomAus/DecisionTransformerInterpretability) as a seqlens DecisionTransformer.

DTI saves a model with `store_transformer_model` (src/decision_transformer/utils.py): torch.save of a dict holding
`model_state_dict` (TransformerLens names) and three JSON strings, `model_config` (TransformerModelConfig: d_model,
n_heads, d_mlp, n_layers, n_ctx, layer_norm, state_embedding_type, time_embedding_type, activation_fn, gated_mlp),
`environment_config` (env_id, one_hot_obs, view_size, max_steps, ...) and `offline_config`. The file is read by
models/pt_reader.py (weights only; `cli.py convert-agent` alone), never torch.load.

What DTI's model computes (src/models/trajectory_transformer.py; tests/dti_reference.py re-implements it) and how it
maps onto ours (DTHparams switches, models/decision_transformer.py):
- a K-step window is n_ctx = 3K - 1 tokens R_1 s_1 a_1 ... R_K s_K (no last action); the action is read from the
  s tokens -> context_length K = (n_ctx + 1) / 3; our window has the a_K token too, which no s token sees (causal).
- tokens are the embeddings plus the time embedding, plus TransformerLens' W_pos [n_ctx, d] by token position; no
  layer norm over the embeddings -> position_embedding "tokens" (wpe_tokens = W_pos and a zero row for a_K),
  embed_ln false.
- state_embedding "grid": a bias-free Linear over the grid flattened (channel, height, width) -> state_encoder
  "grid", whose weight reads the observation in its own (height, width, channel) order: columns permuted here.
- time_embedding: Embedding(max_steps + 1, d) or Linear(1, d) of the timestep -> time_embedding "embedding" /
  "linear", max_ep_len = max_steps + 1.
- reward_embedding Linear(1, d) without bias; action_embedding Embedding(n_actions + 1, d), row n_actions the pad
  -> embed_return (zero bias), embed_action = rows 0..n-1 on one-hot actions (zero bias), action_pad = row n.
- TransformerLens blocks: W_Q / W_K / W_V [h, d, d_head] -> c_attn, W_O [h, d_head, d] -> c_proj, W_in / W_out /
  W_gate -> c_fc / c_proj / c_gate, ln1 / ln2 / ln_final (w, b) -> ln_1 / ln_2 / ln_f; layer_norm None -> none;
  activation_fn relu / gelu -> activation; scores / sqrt(d_head), plain causal attention (banded false).
- evaluation (eval.py, utils.initialize_padding_inputs): the window is always K steps, left-padded with zero
  observations, the pad action, the initial return-to-go and timestep 0, and the model attends to the pads (no mask)
  -> padding "dti". Returns-to-go are not scaled (rtg_scale 1); observations are used raw (no statistics).
The return head is reward_predictor, the state head state_predictor (rows permuted like the state embedding's
columns); the value head and the "unknown return" embedding do not exist in DTI: they stay zero (untrained).
At the last step DTI reads its reward / state predictions from the s_K token (get_logits appends x[:, -2]); ours
read the a_K token there, so those two predictions differ at the window's last step (actions do not).

Every failure is an AgentError of one sentence: the file's structure, every config field's type and range, the
config against every tensor's shape (a config contradicting its tensors, an unknown state_embedding_type, n_ctx not
matching the position table, ...), all before anything is built.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .base import AgentConfig
from .config_check import MAX_CONTEXT, MAX_LAYERS, ConfigChecker
from .decision_transformer import DecisionTransformer
from .errors import AgentError

CONFIG_KEYS = ("model_state_dict", "model_config", "environment_config")
JSON_BYTES = 64 << 10        # a real config string is a few hundred bytes
MAX_STEPS = 10_000_000
ACTIVATIONS = ("relu", "gelu", "silu", "gelu_new")   # TransformerLens act_fn names with the same function here
LAYER_NORMS = {None: None, False: None, True: "LN", "LN": "LN", "LNPre": "LNPre"}
ONE_HOT_CHANNELS = 20        # minigrid's OneHotPartialObsWrapper: 11 object + 6 colour + 3 state values per cell
GRID_CHANNELS = 3            # (object, colour, state) per cell


def looks_like_dti(obj) -> bool:
    return isinstance(obj, dict) and all(k in obj for k in CONFIG_KEYS)


def _json(obj: dict, key: str, name: str) -> dict:
    text = obj.get(key)
    if not isinstance(text, str):
        raise AgentError(f"{name}: '{key}' is a {type(text).__name__}; DTI saves it as a JSON string.")
    if len(text) > JSON_BYTES:
        raise AgentError(f"{name}: '{key}' is {len(text):,} characters, over the limit of {JSON_BYTES:,} "
                         "(a DTI config is a few hundred).")
    try:
        value = json.loads(text)
    except ValueError as e:
        raise AgentError(f"{name}: '{key}' is not valid JSON ({str(e)[:80]}).") from None
    if not isinstance(value, dict):
        raise AgentError(f"{name}: '{key}' must hold a JSON object of the config's fields, got {type(value).__name__}.")
    return value


def read_configs(obj, name: str) -> tuple[dict, dict]:
    """(model_config, environment_config) of a DTI checkpoint dict, every field the import reads checked."""
    if not isinstance(obj, dict):
        raise AgentError(f"{name} holds a {type(obj).__name__}; DTI saves a dict of model_state_dict and its configs.")
    for key in CONFIG_KEYS:
        if key not in obj:
            raise AgentError(f"{name} lacks '{key}', which DTI's store_transformer_model saves.")
    m, e = _json(obj, "model_config", name), _json(obj, "environment_config", name)
    c = ConfigChecker(f"{name}: model_config")
    for key in ("d_model", "n_heads", "d_mlp", "n_layers", "n_ctx"):
        if key not in m:
            c.fail(f"lacks '{key}'")
    d = c.integer(m["d_model"], "d_model", limit="agent_params")
    h = c.integer(m["n_heads"], "n_heads", hi=d)
    if d % h:
        c.fail(f"has d_model {d}, not divisible by n_heads {h}")
    c.integer(m["d_mlp"], "d_mlp", limit="agent_params")
    c.integer(m["n_layers"], "n_layers", hi=MAX_LAYERS)
    n_ctx = c.integer(m["n_ctx"], "n_ctx", lo=2, hi=3 * MAX_CONTEXT)
    if (n_ctx - 2) % 3:
        c.fail(f"has n_ctx {n_ctx}, but a DTI Decision Transformer has 3K - 1 tokens for K steps (2, 5, 8, ...)")
    kind = m.get("state_embedding_type", "grid")
    if not isinstance(kind, str) or kind.lower() != "grid":
        c.fail(f"has state_embedding_type {str(kind)[:40]!r}; seqlens imports DTI's 'grid' state embedding (a Linear "
               "over the flattened grid, one-hot or not), not its CNN / ViT encoders")
    c.string(m.get("time_embedding_type", "embedding"), "time_embedding_type", choices=["embedding", "linear"])
    c.string(m.get("activation_fn", "relu"), "activation_fn", choices=list(ACTIVATIONS))
    c.boolean(m.get("gated_mlp", False) or False, "gated_mlp")
    ln = m.get("layer_norm", False)
    if not isinstance(ln, (str, bool, type(None))) or ln not in LAYER_NORMS:
        c.fail(f"has layer_norm {str(ln)[:20]!r}, expected LN, LNPre, null, true or false")
    ce = ConfigChecker(f"{name}: environment_config")
    ce.string(e.get("env_id"), "env_id")
    ce.integer(e.get("max_steps"), "max_steps", hi=MAX_STEPS)
    ce.integer(e.get("view_size", 7), "view_size", hi=1024)
    for key in ("one_hot_obs", "fully_observed", "img_obs"):
        ce.boolean(e.get(key, False), key)
    if e.get("img_obs"):
        ce.fail("says img_obs (RGB observations, read by DTI's CNN encoder); seqlens imports grid observations")
    return m, e


def _expected(m: dict, e: dict, n_obs: int, n_actions: int) -> dict[str, tuple[int, ...]]:
    """Every tensor a DTI model with these configs has, and its shape."""
    d, h, f, n_ctx = m["d_model"], m["n_heads"], m["d_mlp"], m["n_ctx"]
    dh = d // h
    ln = LAYER_NORMS[m.get("layer_norm", False)] == "LN"
    out = {"action_embedding.0.weight": (n_actions + 1, d), "state_embedding.weight": (d, n_obs),
           "transformer.pos_embed.W_pos": (n_ctx, d), "action_predictor.weight": (n_actions, d),
           "action_predictor.bias": (n_actions,), "state_predictor.weight": (n_obs, d), "state_predictor.bias": (n_obs,),
           "reward_embedding.0.weight": (d, 1), "reward_predictor.weight": (1, d), "reward_predictor.bias": (1,)}
    if m.get("time_embedding_type", "embedding") == "linear":
        out.update({"time_embedding.weight": (d, 1), "time_embedding.bias": (d,)})
    else:
        out["time_embedding.weight"] = (e["max_steps"] + 1, d)
    for i in range(m["n_layers"]):
        p = f"transformer.blocks.{i}."
        for w in "QKV":
            out[p + f"attn.W_{w}"], out[p + f"attn.b_{w}"] = (h, d, dh), (h, dh)
        out.update({p + "attn.W_O": (h, dh, d), p + "attn.b_O": (d,), p + "mlp.W_in": (d, f), p + "mlp.b_in": (f,),
                    p + "mlp.W_out": (f, d), p + "mlp.b_out": (d,)})
        if m.get("gated_mlp"):
            out[p + "mlp.W_gate"] = (d, f)
        if ln:
            for n in ("ln1", "ln2"):
                out[p + f"{n}.w"], out[p + f"{n}.b"] = (d,), (d,)
    if ln:
        out["transformer.ln_final.w"], out["transformer.ln_final.b"] = (d,), (d,)
    return out


# TransformerLens buffers a state dict may carry: each block's causal mask [n_ctx, n_ctx] and its IGNORE value
_BUFFERS = ("attn.mask", "attn.IGNORE")


def _why(key: str, m: dict, e: dict) -> str:
    """Which config field a tensor's presence or shape follows from."""
    if ".ln" in key or "ln_final" in key:
        return f"layer_norm {m.get('layer_norm')!r}"
    if "W_gate" in key:
        return f"gated_mlp {m.get('gated_mlp')!r}"
    if "pos_embed" in key:
        return f"n_ctx {m['n_ctx']}"
    if "time_embedding" in key:
        return (f"time_embedding_type {m.get('time_embedding_type', 'embedding')!r} and environment_config's "
                f"max_steps {e['max_steps']}")
    if "blocks." in key:
        return f"n_layers {m['n_layers']}, d_model {m['d_model']}, n_heads {m['n_heads']} and d_mlp {m['d_mlp']}"
    return f"d_model {m['d_model']}"


def check_state(state, m: dict, e: dict, name: str) -> tuple[tuple[int, int, int], int]:
    """The state dict against the configs (names, shapes, dtypes) -> (the observation's shape, n_actions)."""
    where = f"{name}: model_state_dict"
    if not isinstance(state, dict):
        raise AgentError(f"{where} is a {type(state).__name__}, not a state dict.")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise AgentError(f"{where} holds {str(key)[:60]!r} -> {type(value).__name__}; a state dict maps names to tensors.")
    for key in ("action_predictor.weight", "state_embedding.weight"):
        if key not in state:
            raise AgentError(f"{where} lacks '{key}', which every DTI Decision Transformer has.")
        if state[key].dim() != 2:
            raise AgentError(f"{where}: '{key}' has shape {list(state[key].shape)}, not a matrix.")
    n_actions, n_obs = int(state["action_predictor.weight"].shape[0]), int(state["state_embedding.weight"].shape[1])
    v = e.get("view_size", 7)
    if e.get("fully_observed"):
        side = math.isqrt(n_obs // GRID_CHANNELS)
        shape = (side, side, GRID_CHANNELS)
        said = "a fully observed grid of 3 values per cell"
    else:
        shape = (v, v, ONE_HOT_CHANNELS if e.get("one_hot_obs") else GRID_CHANNELS)
        said = (f"a {v}x{v} view of {shape[2]} values per cell ({'one-hot' if e.get('one_hot_obs') else 'object, colour, state'})")
    if math.prod(shape) != n_obs:
        raise AgentError(f"{name}: environment_config says {said}, {math.prod(shape)} values, but "
                         f"state_embedding.weight reads {n_obs}.")
    expected = _expected(m, e, n_obs, n_actions)
    n_ctx = m["n_ctx"]
    if "transformer.pos_embed.W_pos" in state and state["transformer.pos_embed.W_pos"].shape[:1] != (n_ctx,):
        raise AgentError(f"{name}: model_config says n_ctx {n_ctx}, but transformer.pos_embed.W_pos has "
                         f"{state['transformer.pos_embed.W_pos'].shape[0]} rows (one per token).")
    for key, shape_ in expected.items():
        if key not in state:
            raise AgentError(f"{where} lacks '{key}', which the configs ({_why(key, m, e)}) imply.")
        t = state[key]
        if tuple(t.shape) != shape_:
            raise AgentError(f"{where}: '{key}' has shape {list(t.shape)}, but the configs ({_why(key, m, e)}) "
                             f"imply {list(shape_)}.")
        if not t.is_floating_point():
            raise AgentError(f"{where}: '{key}' is {t.dtype}, expected floating point weights.")
    for key, t in state.items():
        if key in expected:
            continue
        if key.startswith("transformer.blocks.") and key.endswith(_BUFFERS):
            i = key.split(".")[2]
            if not (i.isdigit() and int(i) < m["n_layers"]):
                raise AgentError(f"{where} has '{key[:80]}', beyond model_config's n_layers {m['n_layers']}.")
            if key.endswith("attn.mask") and tuple(t.shape) != (n_ctx, n_ctx):
                raise AgentError(f"{where}: '{key}' is [{', '.join(map(str, t.shape))}], but model_config's n_ctx "
                                 f"{n_ctx} implies a [{n_ctx}, {n_ctx}] causal mask.")
            if key.endswith("attn.IGNORE") and t.numel() != 1:
                raise AgentError(f"{where}: '{key}' must be one number, got shape {list(t.shape)}.")
            continue
        why = _why(key, m, e)
        raise AgentError(f"{where} has '{key[:80]}', which a DTI Decision Transformer with this model_config"
                         f"{'' if why.startswith('d_model') else f' ({why})'} does not have.")
    return shape, n_actions


def _check_values(state: dict, m: dict, name: str) -> None:
    """Finite weights, and causal masks that are causal (else DTI's attention is not ours)."""
    for key, t in state.items():
        if key.endswith("attn.mask"):
            causal = torch.tril(torch.ones(t.shape, dtype=torch.bool))
            if not torch.equal(t.bool(), causal):
                raise AgentError(f"{name}: '{key}' is not a causal mask, so the model's attention would differ from "
                                 "what seqlens computes.")
        elif t.is_floating_point() and not key.endswith("attn.IGNORE") and not bool(torch.isfinite(t).all()):
            raise AgentError(f"{name}: '{key}' holds non-finite numbers.")


def agent_config(m: dict, e: dict, shape, n_actions: int, source: str) -> AgentConfig:
    K = (m["n_ctx"] + 1) // 3
    ln = LAYER_NORMS[m.get("layer_norm", False)]
    return AgentConfig(
        kind="dt", obs_dim=math.prod(shape), act_dim=1, discrete=True, n_actions=n_actions, context_length=K,
        max_ep_len=e["max_steps"] + 1, rtg_scale=1.0,
        hparams={"hidden": m["d_model"], "n_layer": m["n_layers"], "n_head": m["n_heads"], "n_inner": m["d_mlp"],
                 "dropout": 0.0, "activation": m.get("activation_fn", "relu"), "layer_norm_eps": 1e-5,
                 "banded": False, "hf_wpe": False, "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
                 "hf_import": f"dti:{source}", "obs_shape": list(shape), "state_encoder": "grid",
                 "time_embedding": m.get("time_embedding_type", "embedding"), "position_embedding": "tokens",
                 "n_positions": 3 * K, "embed_ln": False, "layer_norm": ln is not None,
                 "gated_mlp": bool(m.get("gated_mlp")), "padding": "dti"},
        dataset={"name": e["env_id"][:200]}, training={"source": "DecisionTransformerInterpretability"})


def _grid_order(w: torch.Tensor, shape, axis: int) -> torch.Tensor:
    """DTI's (channel, height, width) flattening along `axis` -> the observation's (height, width, channel)."""
    H, W, C = shape
    if axis == 1:
        return w.reshape(w.shape[0], C, H, W).permute(0, 2, 3, 1).reshape(w.shape[0], -1)
    return w.reshape(C, H, W, *w.shape[1:]).permute(1, 2, 0, *range(3, w.dim() + 2)).reshape(-1, *w.shape[1:])


def map_state(state: dict, m: dict, shape, n_actions: int) -> dict[str, torch.Tensor]:
    """DTI tensors -> our parameter names (float32)."""
    s = {k: v.float() for k, v in state.items()}
    d, h, n = m["d_model"], m["n_heads"], m["n_ctx"]
    out = {"embed_return.weight": s["reward_embedding.0.weight"], "embed_return.bias": torch.zeros(d),
           "embed_state.weight": _grid_order(s["state_embedding.weight"], shape, axis=1),
           "embed_action.weight": s["action_embedding.0.weight"][:n_actions].T.contiguous(),
           "embed_action.bias": torch.zeros(d), "action_pad": s["action_embedding.0.weight"][n_actions].clone(),
           "wpe_tokens": torch.cat([s["transformer.pos_embed.W_pos"], torch.zeros(3 * ((n + 1) // 3) - n, d)]),
           "return_unknown": torch.zeros(d),
           "predict_action.weight": s["action_predictor.weight"], "predict_action.bias": s["action_predictor.bias"],
           "predict_state.weight": _grid_order(s["state_predictor.weight"], shape, axis=0),
           "predict_state.bias": _grid_order(s["state_predictor.bias"][:, None], shape, axis=0)[:, 0],
           "predict_return.weight": s["reward_predictor.weight"], "predict_return.bias": s["reward_predictor.bias"],
           "predict_value.weight": torch.zeros(1, d), "predict_value.bias": torch.zeros(1)}
    out["embed_timestep.weight"] = s["time_embedding.weight"]
    if "time_embedding.bias" in s:
        out["embed_timestep.bias"] = s["time_embedding.bias"]
    ln = LAYER_NORMS[m.get("layer_norm", False)]
    for i in range(m["n_layers"]):
        p, q = f"transformer.blocks.{i}.", f"encoder.h.{i}."
        W = [s[p + f"attn.W_{w}"].permute(0, 2, 1).reshape(d, d) for w in "QKV"]   # rows: head * d_head + e
        out[q + "attn.c_attn.weight"] = torch.cat(W)
        out[q + "attn.c_attn.bias"] = torch.cat([s[p + f"attn.b_{w}"].reshape(d) for w in "QKV"])
        out[q + "attn.c_proj.weight"] = s[p + "attn.W_O"].reshape(d, d).T.contiguous()
        out[q + "attn.c_proj.bias"] = s[p + "attn.b_O"]
        out[q + "mlp.c_fc.weight"] = s[p + "mlp.W_in"].T.contiguous()
        out[q + "mlp.c_fc.bias"] = s[p + "mlp.b_in"]
        out[q + "mlp.c_proj.weight"] = s[p + "mlp.W_out"].T.contiguous()
        out[q + "mlp.c_proj.bias"] = s[p + "mlp.b_out"]
        if m.get("gated_mlp"):
            out[q + "mlp.c_gate.weight"] = s[p + "mlp.W_gate"].T.contiguous()
        for ours, theirs in (("ln_1", "ln1"), ("ln_2", "ln2")):
            if ln == "LN":
                out[q + f"{ours}.weight"], out[q + f"{ours}.bias"] = s[p + f"{theirs}.w"], s[p + f"{theirs}.b"]
            elif ln == "LNPre":   # TransformerLens' LayerNormPre: centre and scale, no weights
                out[q + f"{ours}.weight"], out[q + f"{ours}.bias"] = torch.ones(d), torch.zeros(d)
    if ln == "LN":
        out["encoder.ln_f.weight"], out["encoder.ln_f.bias"] = s["transformer.ln_final.w"], s["transformer.ln_final.b"]
    elif ln == "LNPre":
        out["encoder.ln_f.weight"], out["encoder.ln_f.bias"] = torch.ones(d), torch.zeros(d)
    return out


def fitting_env_id(env_id: str, shape, n_actions: int, name: str) -> tuple[str | None, list[str]]:
    """The env id when this machine registers it with spaces that fit; otherwise None and a note."""
    import envs
    from gymnasium import spaces

    shown = repr(env_id[:60])
    try:
        obs_space, act_space = envs.env_spaces(env_id)
    except envs.EnvIdError:
        return None, [f"{name}: env_id {shown} is not registered here, so the agent names no environment "
                      "(cli.py evaluate --env ID picks one)."]
    except Exception as e:  # noqa: BLE001 - registered, but not makeable here: keep the id
        return env_id, [f"The environment {env_id} is not available here ({' '.join(str(e).split())[:120]}), so the "
                        "agent can be analysed offline but not evaluated."]
    image = obs_space["image"] if isinstance(obs_space, spaces.Dict) and "image" in obs_space.spaces else obs_space
    got = tuple(getattr(image, "shape", ()) or ())
    # DTI's wrappers (models/rollout.make_agent_env) make a coded 3-channel grid the agent's view size and one-hot bits
    fits = ((got == tuple(shape) or len(got) == 3 and got[2] == 3 and len(shape) == 3)
            and isinstance(act_space, spaces.Discrete)
            and int(act_space.n) == n_actions)
    if not fits:
        return None, [f"{name}: {env_id}'s observations {getattr(image, 'shape', None)} and actions do not fit the "
                      f"model's {tuple(shape)} and {n_actions} actions here, so the agent names no environment."]
    return env_id, []


def load_dti_decision_transformer(path, name: str | None = None, obj=None, env: str | None = None
                                  ) -> tuple[DecisionTransformer, list[str]]:
    """A DTI checkpoint (.pt) -> (DecisionTransformer in eval mode, notes). obj: the file already read by
    models/pt_reader.read_pt (convert-agent reads it once to recognise it); env: an environment id instead of
    environment_config's env_id (kept only where its spaces fit)."""
    from .loading import build_meta
    from .pt_reader import read_pt

    path = Path(path)
    name = name or path.name
    if obj is None:
        obj = read_pt(path, name)
    m, e = read_configs(obj, name)
    state = obj["model_state_dict"]
    shape, n_actions = check_state(state, m, e, name)
    config = agent_config(m, e, shape, n_actions, path.name)
    build_meta(config, name, cls=DecisionTransformer)   # the model it describes, its size checked: no memory yet
    _check_values(state, m, name)
    config.env_id, notes = fitting_env_id(env or e["env_id"], shape, n_actions, name)
    model = DecisionTransformer(config)
    try:
        model.load_state_dict(map_state(state, m, shape, n_actions), strict=True)
    except RuntimeError as err:   # names and shapes were checked above: this would be a mapping bug
        raise AgentError(f"{name}: the DTI tensors do not map onto the model they describe "
                         f"({' '.join(str(err).split())[:120]}).") from None
    notes.append("DTI's model has no value head: value predictions of this agent are untrained (zero).")
    return model.eval(), notes
