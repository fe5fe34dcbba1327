"""Type and range checks on an uploaded config.json, run before anything is built from it.

A stranger's config.json is data: every field a model constructor reads is checked here first (ints
that are ints, positive, within trajectories/limits.py; hidden divisible by n_head; finite floats; list
lengths), so a lie gets one sentence instead of a ZeroDivisionError, a TypeError or gigabytes of
allocation. Every failure is an AgentError naming the file and the field.
"""
from __future__ import annotations

import math

from trajectories.limits import ENV, limits

from .errors import AgentError
from .hparams import FITTED, defaults

KINDS = ("dt", "tt", "mlp", "gru", "dynamics", "q", "drqn", "cq")
VALUE_KINDS = ("q", "drqn")   # issue 24, discrete; continuous "cq" (models/continuous_q.py): _check_cq_hparams
# Sizes no limit in trajectories/limits.py bounds directly: a loop of this many layers, or a window of
# this many steps, is refused before a model is (even meta-)built. Real agents are far below them.
MAX_LAYERS = 256
MAX_CONTEXT = 100_000
MAX_BINS = 100_000


class ConfigChecker:
    """Checks on one config file; `where` is how messages name it, e.g. "agent.zip: config.json"."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, what: str):
        raise AgentError(f"{self.where} {what}.")

    # ---- scalars ---------------------------------------------------------------------------------------
    def integer(self, value, key: str, lo: int = 1, hi: int | None = None, limit: str | None = None,
                optional: bool = False):
        """An int (not bool, float, list or null unless optional) in [lo, hi]; `limit` names a limits() field."""
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"field '{key}' must be an integer, got {_show(value)}")
        if value < lo:
            self.fail(f"field '{key}' must be at least {lo}, got {value}")
        if limit is not None:
            hi = getattr(limits(), limit)
            if value > hi:
                self.fail(f"field '{key}' is {value}, over the limit of {hi} ({limit}, set by {ENV[limit]})")
        elif hi is not None and value > hi:
            self.fail(f"field '{key}' must be at most {hi}, got {value}")
        return value

    def number(self, value, key: str, lo: float | None = None, hi: float | None = None, positive: bool = False,
               optional: bool = False):
        """A finite JSON number (int or float, not bool), optionally > 0 or within [lo, hi]."""
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"field '{key}' must be a number, got {_show(value)}")
        if isinstance(value, int) and abs(value) > 1e308:   # math.isfinite would raise OverflowError
            self.fail(f"field '{key}' must be a finite number, got an integer of {len(str(abs(value)))} digits")
        if not math.isfinite(value):
            self.fail(f"field '{key}' must be a finite number, got {value}")
        if positive and not value > 0:
            self.fail(f"field '{key}' must be positive, got {value}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.fail(f"field '{key}' must be between {lo} and {hi}, got {value}")
        return value

    def boolean(self, value, key: str, optional: bool = False):
        if value is None and optional:
            return None
        if not isinstance(value, bool):
            self.fail(f"field '{key}' must be true or false, got {_show(value)}")
        return value

    def string(self, value, key: str, choices=None, optional: bool = False):
        if value is None and optional:
            return None
        if not isinstance(value, str):
            self.fail(f"field '{key}' must be a string, got {_show(value)}")
        if choices is not None and value not in choices:
            self.fail(f"field '{key}' is {value[:60]!r}, expected one of {', '.join(map(str, choices))}")
        return value

    def dict_(self, value, key: str):
        if not isinstance(value, dict):
            self.fail(f"field '{key}' must be a JSON object, got {_show(value)}")
        return value

    def floats(self, value, key: str, length: int, optional: bool = True):
        """A list of `length` finite numbers."""
        if value is None and optional:
            return None
        if not isinstance(value, list):
            self.fail(f"field '{key}' must be a list of {length} numbers, got {_show(value)}")
        if len(value) != length:
            self.fail(f"field '{key}' must be a list of {length} numbers, got {len(value)}")
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                self.fail(f"field '{key}' must hold finite numbers, got {_show(v)}")
        return value

    def matrix(self, value, key: str, rows: int, cols: int):
        """A [rows][cols] list of lists of finite numbers."""
        if not isinstance(value, list) or len(value) != rows:
            self.fail(f"field '{key}' must be a list of {rows} rows, got {_show(value) if not isinstance(value, list) else len(value)}")
        for row in value:
            self.floats(row, key, cols, optional=False)
        return value


def _show(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return f"a {'list' if isinstance(value, list) else 'JSON object'}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---- native seqlens configs ------------------------------------------------------------------------------
def check_agent_config(raw: dict, where: str) -> None:
    """Checks a seqlens config.json dict (its "format" key already removed) field by field."""
    c = ConfigChecker(where)
    for key in ("kind", "obs_dim", "act_dim", "discrete"):
        if key not in raw:
            c.fail(f"lacks '{key}', which every seqlens agent config gives")
    kind = c.string(raw["kind"], "kind")
    if kind not in KINDS:
        raise AgentError(f"{where}: unknown agent kind '{kind[:60]}' (expected {', '.join(KINDS[:-1])} or {KINDS[-1]}).")
    obs_dim = c.integer(raw["obs_dim"], "obs_dim", limit="features")
    act_dim = c.integer(raw["act_dim"], "act_dim", limit="features")
    discrete = c.boolean(raw["discrete"], "discrete")
    n_actions = c.integer(raw.get("n_actions"), "n_actions", limit="actions", optional=True)
    if discrete and n_actions is None:
        c.fail("says discrete is true but gives no 'n_actions'")
    if discrete and act_dim != 1:
        c.fail(f"field 'act_dim' must be 1 for discrete actions, got {act_dim}")
    context = c.integer(raw.get("context_length", 1), "context_length", hi=MAX_CONTEXT)
    c.integer(raw.get("max_ep_len", 1000), "max_ep_len", limit="agent_params")
    c.number(raw.get("rtg_scale", 1.0), "rtg_scale", positive=True)
    c.floats(raw.get("state_mean"), "state_mean", obs_dim)
    c.floats(raw.get("state_std"), "state_std", obs_dim)
    if raw.get("state_std") is not None and min(raw["state_std"], default=1) < 0:
        c.fail("field 'state_std' must not hold negative numbers")
    low, high = c.floats(raw.get("action_low"), "action_low", act_dim), c.floats(raw.get("action_high"), "action_high", act_dim)
    if (low is None) != (high is None):
        c.fail("gives only one of 'action_low' and 'action_high'")
    if low is not None and any(lo > hi for lo, hi in zip(low, high)):
        c.fail("has an 'action_low' above its 'action_high'")
    c.string(raw.get("env_id"), "env_id", optional=True)
    for key in ("hparams", "dataset", "training", "evaluation"):
        c.dict_(raw.get(key, {}), key)
    _check_evaluation(c, raw.get("evaluation", {}))
    hp = raw.get("hparams", {})
    if kind in VALUE_KINDS:
        _check_value_config(c, kind, hp, discrete)
        return
    known = set(defaults(kind)) | set(FITTED.get(kind, ()))
    unknown = sorted(set(hp) - known)
    if unknown:
        c.fail(f"has unknown {kind} hparams ({', '.join(k[:40] for k in unknown[:3])})")
    hp = {**defaults(kind), **hp}   # models/hparams.py: the one place defaults live
    if kind == "dt":
        _check_dt_hparams(c, hp, context)
    elif kind == "tt":
        _check_tt_hparams(c, hp, obs_dim + act_dim + 2)
    elif kind == "cq":
        _check_cq_hparams(c, hp, discrete)
    else:
        c.integer(hp["hidden"], "hparams.hidden", limit="agent_params")
        c.integer(hp["n_layer"], "hparams.n_layer", lo=1 if kind == "gru" else 0, hi=MAX_LAYERS)
        if "dropout" in hp:
            c.number(hp["dropout"], "hparams.dropout", lo=0, hi=1)
        if "max_train_len" in hp:
            c.integer(hp["max_train_len"], "hparams.max_train_len", hi=MAX_CONTEXT * 10)
        if "reward_scale" in hp:
            c.number(hp["reward_scale"], "hparams.reward_scale", positive=True)


def _check_value_config(c: ConfigChecker, kind: str, hp: dict, discrete: bool) -> None:
    """Discrete value agents (issue 24): the action space their kind needs, then every hparam against the type of its
    default (models/hparams.py) and its range."""
    from .hparams import HPARAMS

    if not discrete:
        c.fail(f"says discrete is false, but a '{kind}' agent chooses among discrete actions (continuous: kind 'cq')")
    if kind not in HPARAMS:
        return
    known = defaults(kind)
    unknown = sorted(set(hp) - set(known))
    if unknown:
        c.fail(f"has unknown {kind} hparams ({', '.join(k[:40] for k in unknown[:3])})")
    hp = {**known, **hp}
    for key, default in known.items():
        name = f"hparams.{key}"
        if key in VALUE_RANGES:
            c.number(hp[key], name, *VALUE_RANGES[key])
        elif key == "method":
            c.string(hp[key], name, choices=VALUE_METHODS.get(kind))
        elif key == "loss":
            c.string(hp[key], name, choices=("huber", "mse"))
        elif isinstance(default, bool):
            c.boolean(hp[key], name)
        elif isinstance(default, int):
            c.integer(hp[key], name, lo=0 if key in ("burn_in", "learning_starts") else 1,
                      **({"limit": "agent_params"} if key == "hidden" else {"hi": MAX_LAYERS if key == "n_layer" else MAX_CONTEXT * 100}))
        elif isinstance(default, float):
            c.number(hp[key], name, lo=0)
        elif isinstance(default, str):
            c.string(hp[key], name)


# (lo, hi) of the value agents' float hparams; other floats must be finite and >= 0
VALUE_RANGES = {"gamma": (0, 1), "tau": (0, 1), "eps_start": (0, 1), "eps_end": (0, 1), "eps_fraction": (0, 1)}
VALUE_METHODS = {"q": ("cql", "dqn"), "drqn": ("cql",), "cq": ("cql", "iql")}   # how each kind is trained
def _check_cq_hparams(c: ConfigChecker, hp: dict, discrete: bool) -> None:
    """models/continuous_q.py's hparams (IQL / CQL on continuous actions)."""
    if discrete:
        c.fail("says discrete is true, but a 'cq' agent (IQL / CQL) acts with continuous actions")
    c.string(hp["method"], "hparams.method", choices=("iql", "cql"))
    c.integer(hp["hidden"], "hparams.hidden", limit="agent_params")
    c.integer(hp["n_layer"], "hparams.n_layer", lo=0, hi=MAX_LAYERS)
    c.number(hp["gamma"], "hparams.gamma", lo=0, hi=1)
    c.number(hp["tau"], "hparams.tau", lo=0, hi=1)
    c.number(hp["reward_scale"], "hparams.reward_scale", positive=True, optional=True)
    c.number(hp["expectile"], "hparams.expectile", lo=0, hi=1)
    for key in ("beta", "max_weight", "alpha"):
        c.number(hp[key], f"hparams.{key}", lo=0, hi=1e6)
    c.integer(hp["n_sampled"], "hparams.n_sampled", hi=1000)


def _check_evaluation(c: ConfigChecker, evaluation: dict) -> None:
    """The agent card prints evaluation results with number formats: each must be a number."""
    results = evaluation.get("results")
    if results is None:
        return
    if not isinstance(results, list):
        c.fail("field 'evaluation.results' must be a list")
    for r in results:
        c.dict_(r, "evaluation.results[]")
        c.number(r.get("target_return"), "evaluation.results[].target_return", optional=True)
        for key in ("mean_return", "ci_low", "ci_high"):
            c.number(r.get(key), f"evaluation.results[].{key}")
        c.integer(r.get("episodes"), "evaluation.results[].episodes", lo=0)


def _check_transformer_sizes(c: ConfigChecker, hp: dict) -> int:
    hidden = c.integer(hp["hidden"], "hparams.hidden", limit="agent_params")
    n_head = c.integer(hp["n_head"], "hparams.n_head", hi=hidden)
    if hidden % n_head:
        c.fail(f"field 'hparams.hidden' ({hidden}) must be divisible by 'hparams.n_head' ({n_head})")
    c.integer(hp["n_layer"], "hparams.n_layer", hi=MAX_LAYERS)
    c.number(hp["dropout"], "hparams.dropout", lo=0, hi=1)
    return hidden


def _check_dt_hparams(c: ConfigChecker, hp: dict, context: int) -> None:
    """hp: the config's hparams over the defaults (unknown keys already refused)."""
    from .block import ACTIVATIONS as _ACTIVATIONS

    _check_transformer_sizes(c, hp)
    c.integer(hp["n_inner"], "hparams.n_inner", limit="agent_params", optional=True)
    c.string(hp["activation"], "hparams.activation", choices=list(_ACTIVATIONS))
    c.number(hp["layer_norm_eps"], "hparams.layer_norm_eps", positive=True)
    c.number(hp["rtg_dropout"], "hparams.rtg_dropout", lo=0, hi=1)
    for key in ("action_weight", "return_weight", "value_weight"):
        c.number(hp[key], f"hparams.{key}")
    c.integer(hp["train_window"], "hparams.train_window", hi=MAX_CONTEXT * MAX_LAYERS, optional=True)
    for key in ("action_tanh", "banded", "hf_wpe", "scale_attn_weights", "scale_attn_by_inverse_layer_idx"):
        c.boolean(hp[key], f"hparams.{key}")
    c.string(hp["hf_import"], "hparams.hf_import", optional=True)
    from .configs import PADDINGS, POSITION_EMBEDDINGS, TIME_EMBEDDINGS
    from .state_encoders import ENCODERS

    for key, choices in (("state_encoder", ENCODERS), ("time_embedding", TIME_EMBEDDINGS),
                         ("position_embedding", POSITION_EMBEDDINGS), ("padding", PADDINGS)):
        c.string(hp[key], f"hparams.{key}", choices=list(choices))
    for key in ("embed_tanh", "embed_ln", "layer_norm", "gated_mlp"):
        c.boolean(hp[key], f"hparams.{key}")
    c.integer(hp["n_positions"], "hparams.n_positions", hi=3 * MAX_CONTEXT + 1, optional=True)
    shape = hp["obs_shape"]
    if shape is not None:
        if not isinstance(shape, list) or not 1 <= len(shape) <= 4:
            c.fail("field 'hparams.obs_shape' must be a list of 1 to 4 integers")
        for n in shape:
            c.integer(n, "hparams.obs_shape[]", limit="agent_params")


def _check_tt_hparams(c: ConfigChecker, hp: dict, dims: int) -> None:
    """hp: the config's hparams over the defaults (unknown keys already refused)."""
    _check_transformer_sizes(c, hp)
    n_bins = c.integer(hp["n_bins"], "hparams.n_bins", lo=2, hi=MAX_BINS)
    c.number(hp["discount"], "hparams.discount", lo=0, hi=1)
    for key in ("action_weight", "reward_weight", "value_weight"):
        c.number(hp[key], f"hparams.{key}")
    for key in ("beam_width", "horizon", "n_expand"):
        c.integer(hp[key], f"hparams.{key}", hi=MAX_CONTEXT)
    c.string(hp["action_proposal"], "hparams.action_proposal", choices=("model", "uniform", "argmax"), optional=True)
    c.number(hp["action_cdf"], "hparams.action_cdf", lo=0, hi=1)
    c.string(hp["obs_decoding"], "hparams.obs_decoding", choices=("argmax", "sample"))
    c.string(hp["value_decoding"], "hparams.value_decoding", choices=("mean", "argmax", "quantile"))
    c.number(hp["value_quantile"], "hparams.value_quantile", lo=0, hi=1)
    c.number(hp.get("obs_quantization_floor"), "hparams.obs_quantization_floor", optional=True)
    if "discretizer" not in hp:
        c.fail("lacks 'hparams.discretizer', which a TT agent config gives")
    disc = c.dict_(hp["discretizer"], "hparams.discretizer")
    if dims * n_bins > limits().agent_params:
        c.fail(f"implies {dims} x {n_bins} discretizer bins, over the limit of {limits().agent_params} "
               f"(agent_params, set by {ENV['agent_params']})")
    c.matrix(disc.get("edges"), "hparams.discretizer.edges", dims, n_bins - 1)
    c.matrix(disc.get("centres"), "hparams.discretizer.centres", dims, n_bins)
    if disc.get("counts") is not None:
        c.matrix(disc["counts"], "hparams.discretizer.counts", dims, n_bins)


# ---- Hugging Face Decision Transformer configs --------------------------------------------------------------
def check_hf_config(hf: dict, where: str) -> None:
    """Checks the fields of a DecisionTransformerModel config.json that the import reads."""
    from .block import ACTIVATIONS as _ACTIVATIONS

    c = ConfigChecker(where)
    for key in ("state_dim", "act_dim", "hidden_size", "n_layer", "n_head", "max_ep_len"):
        if key not in hf:
            c.fail(f"lacks '{key}', which a Decision Transformer config must give")
    c.integer(hf["state_dim"], "state_dim", limit="features")
    c.integer(hf["act_dim"], "act_dim", limit="features")
    hidden = c.integer(hf["hidden_size"], "hidden_size", limit="agent_params")
    n_head = c.integer(hf["n_head"], "n_head", hi=hidden)
    if hidden % n_head:
        c.fail(f"field 'hidden_size' ({hidden}) must be divisible by 'n_head' ({n_head})")
    c.integer(hf["n_layer"], "n_layer", hi=MAX_LAYERS)
    c.integer(hf["max_ep_len"], "max_ep_len", limit="agent_params")
    c.integer(hf.get("n_inner"), "n_inner", limit="agent_params", optional=True)
    act = c.string(hf.get("activation_function", "relu"), "activation_function")
    if act not in _ACTIVATIONS:
        c.fail(f"has activation_function '{act[:40]}', which is not supported (supported: {', '.join(_ACTIVATIONS)})")
    c.number(hf.get("resid_pdrop", 0.1), "resid_pdrop", lo=0, hi=1)
    c.number(hf.get("layer_norm_epsilon", 1e-5), "layer_norm_epsilon", positive=True)
    for key in ("action_tanh", "scale_attn_weights", "scale_attn_by_inverse_layer_idx"):
        c.boolean(hf.get(key, True), key)
