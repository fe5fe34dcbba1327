"""Decision Transformer (Chen et al. 2021, arXiv 2106.01345) in one file, nanoGPT style.

Each step t is three tokens (R_t, s_t, a_t): return-to-go, state, action, each with its own linear
embedding plus a learned *absolute* timestep embedding, then a GPT-2 stack. The action is predicted from
the s_t token; return_preds / state_preds come from the a_t token (as in HF's DecisionTransformerModel);
value_preds come from the s_t token of sequences whose returns-to-go are hidden (see `forward`).

Parameter names follow HF's DecisionTransformerModel so an HF checkpoint is a mapping (models/hf_import.py):
embed_timestep, embed_return, embed_state, embed_action, embed_ln, encoder.h.{i}.{ln_1, attn.c_attn,
attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}, encoder.ln_f, predict_state, predict_action, predict_return.
(HF's Conv1D stores weights [in, out]; ours are nn.Linear [out, in].)

Attention is banded causal: a token sees only tokens of its own and the K-1 previous steps
(K = context_length). On windows of <= K steps that is plain causal attention (what HF computes); over
longer sequences it makes a sliding KV cache of the last K steps exact: the cache *is* the model's
semantics, not an approximation of it (DESIGN.md). Training uses windows of n_layer*K steps, so the
band (not the window edge) is what limits the context the model learns with, as in rollouts.
"""
from __future__ import annotations

import contextlib
import math
from collections import deque
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .activations import ActivationRun, head_outputs, layer_norm
from .base import Agent, AgentConfig, gpt2_init
from .hparams import defaults, resolve
from .windows import TrainingData, clip_timesteps, sample_windows

# ---- hyperparameters (config.hparams overrides any of these) -------------------------------------------
DEFAULTS = defaults("dt")   # models/hparams.py: DTHparams holds every default, with what each means

_ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0)))),
    "gelu_fast": lambda x: 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}


@dataclass
class DTOutput:
    """What `forward` returns. Tensors are [B, L, ...]; attentions / hidden_states only when asked for."""

    action_preds: torch.Tensor                     # [B, L, n_actions] logits (discrete) or [B, L, act_dim]
    return_preds: torch.Tensor                     # [B, L, 1] R_{t+1} (scaled) from the a_t token
    state_preds: torch.Tensor                      # [B, L, obs_dim] s_{t+1} from the a_t token (untrained, as in HF)
    value_preds: torch.Tensor                      # [B, L, 1] R_t (scaled) from s_t; meaningful with rtg_known=False
    attentions: tuple[torch.Tensor, ...] | None = None      # per layer [B, heads, 3L, 3L], tokens R, s, a per step
    hidden_states: tuple[torch.Tensor, ...] | None = None   # per layer block output [B, 3L, hidden]

    def __getitem__(self, key: str) -> torch.Tensor:
        return getattr(self, key)


# ---- the transformer ------------------------------------------------------------------------------------
class SelfAttention(nn.Module):
    def __init__(self, hidden: int, n_head: int, dropout: float, scale: float):
        super().__init__()
        self.n_head, self.hidden, self.scale = n_head, hidden, scale
        self.c_attn = nn.Linear(hidden, 3 * hidden)
        self.c_proj = nn.Linear(hidden, hidden)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x, allowed, past=None, run: ActivationRun | None = None, name: str = ""):
        """x [B, T, C]; allowed [B|1, 1, T, T_past + T] bool; past (k, v) [B, H, T_past, hd] or None;
        run/name: the per-call activation run and this layer's name prefix ("blocks.{i}.attn.")."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.hidden, dim=2)
        q, k, v = (z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for z in (q, k, v))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        att = (q @ k.transpose(-2, -1)) * self.scale
        att = att.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
        if run is not None:
            att = run(name + "pattern", att)
        y = self.attn_dropout(att) @ v
        z = y.transpose(1, 2)
        out = self.c_proj(z.reshape(B, T, C))
        if run is not None and run.wants(name + "head_out"):
            out = head_outputs(run, name + "head_out", z, self.c_proj, out)
        return self.resid_dropout(out), att, (k, v)


class MLP(nn.Module):
    def __init__(self, hidden: int, inner: int, dropout: float, activation: str):
        super().__init__()
        self.c_fc = nn.Linear(hidden, inner)
        self.c_proj = nn.Linear(inner, hidden)
        self.act = _ACTIVATIONS[activation]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, run: ActivationRun | None = None, name: str = ""):
        h = self.act(self.c_fc(x))
        if run is not None:
            h = run(name + "hidden", h)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    def __init__(self, hp: dict, layer_idx: int):
        super().__init__()
        hidden, n_head = hp["hidden"], hp["n_head"]
        scale = (hidden // n_head) ** -0.5 if hp["scale_attn_weights"] else 1.0
        if hp["scale_attn_by_inverse_layer_idx"]:
            scale /= layer_idx + 1
        self.prefix = f"blocks.{layer_idx}."
        self.ln_1 = nn.LayerNorm(hidden, eps=hp["layer_norm_eps"])
        self.attn = SelfAttention(hidden, n_head, hp["dropout"], scale)
        self.ln_2 = nn.LayerNorm(hidden, eps=hp["layer_norm_eps"])
        self.mlp = MLP(hidden, hp["n_inner"], hp["dropout"], hp["activation"])

    def forward(self, x, allowed, past=None, run: ActivationRun | None = None, record_pre: bool = True):
        if run is None:
            a, att, kv = self.attn(self.ln_1(x), allowed, past)
            x = x + a
            return x + self.mlp(self.ln_2(x)), att, kv
        p = self.prefix
        if record_pre:
            x = run(p + "resid_pre", x)
        a, att, kv = self.attn(self.ln_1(x), allowed, past, run, p + "attn.")
        a = run(p + "attn.out", a)
        x = run(p + "resid_mid", x + a)
        m = run(p + "mlp.out", self.mlp(self.ln_2(x), run, p + "mlp."))
        return run(p + "resid_post", x + m), att, kv


def _allowed(q_pos, k_pos, band: int | None, k_valid=None):
    """Which keys each query may attend to: [B|1, 1, Tq, Tk] bool.

    q_pos / k_pos are token positions 3*step + (0 R, 1 s, 2 a). Causal, within the last `band` steps
    (None: no band), only valid (unpadded) keys; and every token always sees itself, so a fully
    masked query row (left padding) still has one key and never turns into NaN.
    """
    qp, kp = q_pos[:, None], k_pos[None, :]
    ok = kp <= qp
    if band is not None:
        ok = ok & (kp // 3 > qp // 3 - band)
    ok = ok[None]
    if k_valid is not None:
        ok = ok & k_valid[:, None, :]
    return (ok | (kp == qp)[None])[:, None]


@contextlib.contextmanager
def _eval_mode(module: nn.Module):
    """no_grad, and eval mode for a module in training: loaded agents already are in eval mode, and walking the
    module tree twice per step was 15% of a rollout (and a write to a shared agent)."""
    was = module.training
    if was:
        module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was:
            module.train(True)


class DecisionTransformer(Agent):
    """Return-conditioned sequence model. forward() is HF's signature; see DTOutput for what it returns.

    Named activations (`run_with_cache`, models/activations.py). B windows of L steps, T = 3L tokens in
    the order R_t, s_t, a_t per step; H = hidden, h = heads, hd = H / h, i = block 0..n_layer-1:
      embed.R, embed.s, embed.a   [B, L, H]   each token's embedding plus its timestep embedding (before
                                              embed_ln; embed.R is `return_unknown` + t where the RTG is hidden)
      blocks.{i}.resid_pre        [B, T, H]   the residual stream into block i (block 0: embed_ln of the
                                              interleaved tokens, + wpe for HF imports, after dropout)
      blocks.{i}.attn.pattern     [B, h, T, T_keys]  attention weights after the softmax (rows: queries)
      blocks.{i}.attn.head_out    [B, T, h, H]  head k's contribution to the residual stream after the output
                                              projection: z_k @ c_proj.weight[:, k*hd:(k+1)*hd].T, z_k the head's
                                              attention-weighted values; no bias, so
                                              sum over heads + attn.c_proj.bias == attn.out (eval mode).
                                              Computed only when requested or intervened on.
      blocks.{i}.attn.out         [B, T, H]   the attention block's output (c_proj incl. bias, after dropout)
      blocks.{i}.resid_mid        [B, T, H]   resid_pre + attn.out
      blocks.{i}.mlp.hidden       [B, T, n_inner]  the MLP's activations (after the nonlinearity)
      blocks.{i}.mlp.out          [B, T, H]   the MLP block's output (after dropout)
      blocks.{i}.resid_post       [B, T, H]   resid_mid + mlp.out (= hidden_states[i] of forward)
      ln_final.scale              [B, T, 1]   the final layer norm's per-token 1 / sqrt(var + eps)
      ln_final.out                [B, T, H]   (resid_post - mean) * scale * ln_f.weight + ln_f.bias
      head.action                 [B, L, n_actions | act_dim]  action_preds (from s_t; tanh applied if continuous)
      head.return                 [B, L, 1]   return_preds (from a_t)
      head.state                  [B, L, obs_dim]  state_preds (from a_t; untrained, as in HF)
      head.value                  [B, L, 1]   value_preds (from s_t)
    run_with_cache(..., last_state_only=True) computes only what the last step's s_t token needs (see there).
    """

    capabilities = frozenset({"action", "return", "value", "state", "attention", "kv_cache", "return_conditioned",
                              "acts"})

    def __init__(self, config: AgentConfig):
        if config.kind != "dt":
            raise ValueError(f"DecisionTransformer needs a config of kind 'dt', got '{config.kind}'.")
        hp = resolve("dt", config.hparams)
        hp["n_inner"] = hp["n_inner"] or 4 * hp["hidden"]
        hp["train_window"] = hp["train_window"] or config.context_length
        if hp["hidden"] % hp["n_head"]:
            raise ValueError(f"hidden size {hp['hidden']} must be divisible by n_head {hp['n_head']}.")
        if hp["activation"] not in _ACTIVATIONS:
            raise ValueError(f"unknown activation '{hp['activation']}' (known: {', '.join(_ACTIVATIONS)}).")
        if config.discrete and not config.n_actions:
            raise ValueError("a discrete-action Decision Transformer needs config.n_actions.")
        if not config.rtg_scale > 0:
            raise ValueError(f"rtg_scale must be positive, got {config.rtg_scale}.")
        if config.context_length < 1:
            raise ValueError(f"context_length must be at least 1, got {config.context_length}.")
        super().__init__(replace(config, hparams=hp))
        self.hp = hp
        H = hp["hidden"]
        c = self.config
        self.action_in = c.n_actions if c.discrete else c.act_dim   # one-hot width or action vector size

        self.embed_timestep = nn.Embedding(c.max_ep_len, H)
        self.embed_return = nn.Linear(1, H)
        self.embed_state = nn.Linear(c.obs_dim, H)
        self.embed_action = nn.Linear(self.action_in, H)
        self.embed_ln = nn.LayerNorm(H)
        # Value head: with R_t as an input, predicting the return is a copy. A Key-to-Door analysis looks for
        # memory (was the key taken in phase 1?), which only shows in a prediction that must infer the return
        # from the history. So some training sequences get this learned "unknown return" embedding in
        # place of every R token, and predict_value learns R_t (scaled) from them alone.
        self.return_unknown = nn.Parameter(torch.zeros(H))
        if hp["hf_wpe"]:
            self.wpe = nn.Parameter(torch.zeros(H))
        self.drop = nn.Dropout(hp["dropout"])
        self.encoder = nn.ModuleDict({"h": nn.ModuleList([Block(hp, i) for i in range(hp["n_layer"])]),
                                      "ln_f": nn.LayerNorm(H, eps=hp["layer_norm_eps"])})
        self.predict_state = nn.Linear(H, c.obs_dim)
        self.predict_action = nn.Linear(H, self.action_in)
        self.predict_return = nn.Linear(H, 1)
        self.predict_value = nn.Linear(H, 1)
        self.apply(gpt2_init)
        for name, p in self.named_parameters():   # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * hp["n_layer"]))

    @property
    def band(self) -> int | None:
        """Steps a token attends back over (K), or None for plain causal attention (HF imports)."""
        return self.config.context_length if self.hp["banded"] else None

    @property
    def n_layer(self) -> int:
        return int(self.hp["n_layer"])

    @property
    def n_head(self) -> int:
        return int(self.hp["n_head"])

    @property
    def receptive_field(self) -> int:
        """Steps of history the action at t depends on while acting: a banded DT sees K steps per layer and
        each key was itself computed from K steps before it (n_layer * K, what its cached rollout
        computes); an HF import attends to its last K steps only."""
        K = self.config.context_length
        return self.n_layer * K if self.hp["banded"] else K

    def card(self) -> dict:
        hp = self.hp
        source = hp["hf_import"]
        if hp["banded"]:
            attention = f"banded causal, last {self.context_length} steps"
        elif source is None:
            attention = "causal"
        else:
            attention = "causal (CORL import)" if str(source).startswith("corl:") else "causal (HF import)"
        return {**super().card(), "hidden": hp["hidden"], "layers": hp["n_layer"], "heads": hp["n_head"],
                "attention": attention, "rtg_scale": self.config.rtg_scale, "max_ep_len": self.config.max_ep_len,
                "hf_import": hp["hf_import"]}

    # ---- embedding ---------------------------------------------------------------------------------------
    def _timesteps(self, timesteps: torch.Tensor) -> torch.Tensor:
        if timesteps.numel() and int(timesteps.max()) >= self.config.max_ep_len:
            clipped = clip_timesteps(timesteps.detach().cpu().numpy(), self.config.max_ep_len)  # warns
            timesteps = torch.as_tensor(clipped, device=timesteps.device)
        return timesteps.clamp(min=0)

    def _finish_tokens(self, tok: torch.Tensor) -> torch.Tensor:
        tok = self.embed_ln(tok)
        if self.hp["hf_wpe"]:
            tok = tok + self.wpe
        return self.drop(tok)

    def _embed_return(self, returns_to_go, rtg_known):
        r = self.embed_return(returns_to_go)
        if rtg_known is True:
            return r
        known = torch.as_tensor(rtg_known, dtype=torch.bool, device=r.device).reshape(-1, *([1] * (r.dim() - 1)))
        return torch.where(known, r, self.return_unknown)

    def action_inputs(self, actions) -> torch.Tensor:
        """Dataset actions -> what embed_action takes: one-hot (discrete) or mapped into [-1, 1] by the bounds."""
        actions = torch.as_tensor(np.asarray(actions) if not torch.is_tensor(actions) else actions,
                                  device=self.action_low.device)
        if self.discrete:
            return F.one_hot(actions.long().clamp(0, self.action_in - 1), self.action_in).float()
        return self.actions_to_unit(actions)

    def env_actions(self, action_preds: torch.Tensor) -> torch.Tensor:
        """Continuous model outputs in [-1, 1] -> env actions in [action_low, action_high]."""
        return self.unit_to_actions(action_preds)

    # ---- forward -----------------------------------------------------------------------------------------
    def forward(self, states, actions, returns_to_go, timesteps, attention_mask=None,
                output_attentions: bool = False, output_hidden_states: bool = False, rtg_known=True,
                activations: ActivationRun | None = None) -> DTOutput:
        """states [B, L, obs_dim] (normalised); actions [B, L, n_actions one-hot | act_dim in [-1, 1]];
        returns_to_go [B, L, 1] (scaled); timesteps [B, L]; attention_mask [B, L] (1 real, 0 left pad);
        rtg_known: True, False or a [B] bool tensor — sequences marked False see `return_unknown` in
        place of every R token (use value_preds of those). activations: the per-call record/intervene
        run of `run_with_cache` (None: the plain forward)."""
        run = activations
        B, L = states.shape[:2]
        x = self._finish_tokens(self._tokens(states, actions, returns_to_go, timesteps, rtg_known, run))
        pos = torch.arange(3 * L, device=x.device)
        valid = None if attention_mask is None else attention_mask.bool().repeat_interleave(3, dim=1)
        allowed = _allowed(pos, pos, self.band, valid)
        attns, hiddens = [], []
        for block in self.encoder["h"]:
            x, att, _ = block(x, allowed, run=run)
            attns.append(att)
            hiddens.append(x)
        x = layer_norm(self.encoder["ln_f"], x, run, "ln_final.").reshape(B, L, 3, -1)
        out = DTOutput(action_preds=self._action_head(x[:, :, 1]), return_preds=self.predict_return(x[:, :, 2]),
                       state_preds=self.predict_state(x[:, :, 2]), value_preds=self.predict_value(x[:, :, 1]),
                       attentions=tuple(attns) if output_attentions else None,
                       hidden_states=tuple(hiddens) if output_hidden_states else None)
        if run is not None:
            out.action_preds = run("head.action", out.action_preds)
            out.return_preds = run("head.return", out.return_preds)
            out.state_preds = run("head.state", out.state_preds)
            out.value_preds = run("head.value", out.value_preds)
        return out

    def _tokens(self, states, actions, returns_to_go, timesteps, rtg_known, run) -> torch.Tensor:
        """The interleaved token embeddings [B, 3L, H] (R, s, a per step), timestep included."""
        B, L = states.shape[:2]
        t = self.embed_timestep(self._timesteps(timesteps.long()))
        if run is None:
            return torch.stack([self._embed_return(returns_to_go, rtg_known) + t, self.embed_state(states) + t,
                                self.embed_action(actions) + t], dim=2).reshape(B, 3 * L, -1)
        r = run("embed.R", self._embed_return(returns_to_go, rtg_known) + t)
        s = run("embed.s", self.embed_state(states) + t)
        a = run("embed.a", self.embed_action(actions) + t)
        return torch.stack([r, s, a], dim=2).reshape(B, 3 * L, -1)

    # ---- named activations ---------------------------------------------------------------------------
    def activation_names(self) -> list[str]:
        names = ["embed.R", "embed.s", "embed.a"]
        for i in range(self.n_layer):
            p = f"blocks.{i}."
            names += [p + n for n in ("resid_pre", "attn.pattern", "attn.head_out", "attn.out", "resid_mid",
                                      "mlp.hidden", "mlp.out", "resid_post")]
        return names + ["ln_final.scale", "ln_final.out", "head.action", "head.return", "head.state", "head.value"]

    def run_with_cache(self, inputs, names=None, interventions=None, last_state_only: bool = False):
        """See Agent.run_with_cache; inputs: forward() keyword arguments (e.g. window_inputs' dict).

        last_state_only=True computes only what the last step's s_t token needs (the token the action is
        read from), skipping the last step's a_t token and the last block's attention and MLP for every
        other token (a third of the work of a 3-layer model). Embeddings (embed.*) are [B, L, H] as usual;
        the blocks before the last and the last block's resid_pre hold the 3L - 1 tokens up to that s_t
        ([B, 3L - 1, ...]); from the last block's attention on, every activation is that one token's
        ([B, 1, ...]; attn.pattern [B, h, 1, 3L - 1]); outputs are a DTOutput with action_preds and
        value_preds [B, 1, ...] and return_preds / state_preds None (they read a_t). Interventions apply
        as in the full forward, restricted to what that token reads."""
        if not last_state_only:
            return super().run_with_cache(inputs, names, interventions)
        run = ActivationRun(self.activation_names(), names, interventions, what="dt agent")
        skip = {"head.return", "head.state"} & (run.keep | set(run.interventions))
        if skip:
            raise ValueError(f"{', '.join(sorted(skip))} read the a_t token, which last_state_only=True does not compute.")
        return self._last_state(run=run, **inputs), run.cache

    def _last_state(self, states, actions, returns_to_go, timesteps, attention_mask=None, rtg_known=True,
                    run: ActivationRun | None = None) -> DTOutput:
        B, L = states.shape[:2]
        # every token up to the last s_t: the last a_t comes after it, and s_t never sees it
        x = self._finish_tokens(self._tokens(states, actions, returns_to_go, timesteps, rtg_known, run)[:, :-1])
        T = 3 * L - 1
        pos = torch.arange(T, device=x.device)
        valid = None if attention_mask is None else attention_mask.bool().repeat_interleave(3, dim=1)[:, :T]
        blocks = self.encoder["h"]
        allowed = _allowed(pos, pos, self.band, valid)
        for block in blocks[:-1]:
            x, _, _ = block(x, allowed, run=run)
        last = blocks[-1]
        if run is not None:
            x = run(last.prefix + "resid_pre", x)
        # the last block: keys / values of the tokens before s_t, then s_t as the one query
        C, H = x.shape[-1], last.attn.n_head
        _, k, v = last.attn.c_attn(last.ln_1(x[:, :-1])).split(C, dim=2)
        past = tuple(z.view(B, T - 1, H, C // H).transpose(1, 2) for z in (k, v))
        y, _, _ = last(x[:, -1:], _allowed(pos[-1:], pos, self.band, valid), past, run=run, record_pre=False)
        y = layer_norm(self.encoder["ln_f"], y, run, "ln_final.")
        out = DTOutput(action_preds=self._action_head(y), return_preds=None, state_preds=None,
                       value_preds=self.predict_value(y))
        if run is not None:
            out.action_preds = run("head.action", out.action_preds)
            out.value_preds = run("head.value", out.value_preds)
        return out

    def keys_values(self, block: int, resid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Block `block`'s attention keys and values [B, heads, T, hd] of tokens whose resid_pre is resid [B, T, H]
        (ln_1, then c_attn): what its queries see of those tokens (`run_suffix`'s past)."""
        blk = self.encoder["h"][block]
        B, T, C = resid.shape
        h = blk.attn.n_head
        _, k, v = blk.attn.c_attn(blk.ln_1(resid)).split(C, dim=2)
        return tuple(z.view(B, T, h, C // h).transpose(1, 2) for z in (k, v))

    def run_suffix(self, start_block: int, resid: torch.Tensor, pos, past=None, extend=None, queries_from=None,
                   valid: torch.Tensor | None = None) -> DTOutput:
        """Blocks start_block..n_layer-1 on a few tokens against cached keys/values, read out at the last token:
        what an intervention on `blocks.{start_block}.resid_pre` changes, without recomputing what it cannot.

        resid [B, T, H]: the residual stream into block start_block at token positions pos [T] (increasing;
        positions are 3*step + (0 R, 1 s, 2 a) in the window; the last one is the token read out). Per block j,
        index s = j - start_block of each list (None, a shorter list or a None entry: nothing):
          past[s]          (k, v, k_pos): keys / values [B|1, heads, Tp, hd] of other tokens block j's queries may
                           see (e.g. `keys_values(j, resid_pre)` of a run_with_cache), at positions k_pos [Tp] (any
                           order, none in the stream);
          extend[s]        (resid [B|1, E, H], e_pos [E]): tokens appended to the stream before block j (positions
                           after the stream's whose input to block j is known, e.g. unchanged by the intervention);
          queries_from[s]  a position: the stream's tokens before it are keys only at block j (their keys / values
                           are computed and seen, their output is not, and they leave the stream). Default: every
                           token is a query, except in the last block, which computes the last token alone (as
                           `run_with_cache(last_state_only=True)`).
        valid [B|1, T_window] bool: keys that may be attended to, by position (left padding); None: all.
        Exact: a query sees exactly the keys (masked as in `forward`: causal, banded) it sees in the full forward,
        provided the caller's past and stream hold every such key's value.

        start_block == n_layer runs no block: resid is the last block's resid_post. Returns a DTOutput of the
        last token [B, 1, ...] (no activation run, no named points): action_preds and value_preds if it is an s
        token, return_preds and state_preds if an a token (the others None)."""
        blocks = self.encoder["h"]
        n = len(blocks)
        if not 0 <= start_block <= n:
            raise ValueError(f"start_block must be in 0..{n}, got {start_block}.")
        x = resid
        pos = torch.as_tensor(pos, device=x.device, dtype=torch.long)
        B = x.shape[0]

        def entry(seq, s):
            return seq[s] if seq is not None and s < len(seq) else None

        for j in range(start_block, n):
            s, block = j - start_block, blocks[j]
            ext = entry(extend, s)
            if ext is not None:
                e, e_pos = ext
                x = torch.cat([x, e.expand(B, -1, -1)], 1)
                pos = torch.cat([pos, torch.as_tensor(e_pos, device=x.device, dtype=torch.long)])
            first = entry(queries_from, s)
            first = (pos[-1] if j == n - 1 else pos[0]) if first is None else first
            n_keys = int((pos < first).sum())
            ks, vs, k_pos = [], [], []
            p = entry(past, s)
            if p is not None:
                ks.append(p[0].expand(B, -1, -1, -1))
                vs.append(p[1].expand(B, -1, -1, -1))
                k_pos.append(torch.as_tensor(p[2], device=x.device, dtype=torch.long))
            if n_keys:
                k, v = self.keys_values(j, x[:, :n_keys])
                ks.append(k)
                vs.append(v)
                k_pos.append(pos[:n_keys])
            x, pos = x[:, n_keys:], pos[n_keys:]
            k_pos = torch.cat(k_pos + [pos])
            allowed = _allowed(pos, k_pos, self.band, None if valid is None else valid[:, k_pos])
            kv = (torch.cat(ks, 2), torch.cat(vs, 2)) if ks else None
            x, _, _ = block(x, allowed, kv)
        y = self.encoder["ln_f"](x[:, -1:])
        kind = int(pos[-1]) % 3
        return DTOutput(action_preds=self._action_head(y) if kind == 1 else None,
                        return_preds=self.predict_return(y) if kind == 2 else None,
                        state_preds=self.predict_state(y) if kind == 2 else None,
                        value_preds=self.predict_value(y) if kind == 1 else None)

    def _action_head(self, x_state):
        a = self.predict_action(x_state)
        return torch.tanh(a) if (not self.discrete and self.hp["action_tanh"]) else a

    # ---- training ----------------------------------------------------------------------------------------
    def window_inputs(self, w: dict) -> dict[str, torch.Tensor]:
        """A models.windows.gather_windows dict -> forward() keyword arguments (tensors on the model's device)."""
        dev = self.action_low.device
        return {"states": torch.as_tensor(w["obs"], device=dev, dtype=torch.float32),
                "actions": self.action_inputs(w["actions"]),
                "returns_to_go": torch.as_tensor(w["rtg"], device=dev, dtype=torch.float32)[..., None],
                "timesteps": torch.as_tensor(w["timesteps"], device=dev, dtype=torch.long),
                "attention_mask": torch.as_tensor(w["mask"], device=dev, dtype=torch.long)}

    def sample_batch(self, data: TrainingData, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        w = sample_windows(data, batch_size, self.hp["train_window"], rng)
        batch = self.window_inputs(w)
        dev = batch["states"].device
        batch["action_targets"] = torch.as_tensor(w["actions"], device=dev)
        # R_{t+1} = R_t - r_t / scale: what return_preds (from the a_t token) predicts
        batch["next_returns"] = batch["returns_to_go"][..., 0] - torch.as_tensor(
            w["rewards"], device=dev, dtype=torch.float32) / self.config.rtg_scale
        batch["rtg_known"] = torch.as_tensor(rng.random(batch_size) >= self.hp["rtg_dropout"], device=dev)
        return batch

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Action loss on every real step; return loss on RTG-known sequences; value loss on RTG-hidden ones."""
        known = batch.get("rtg_known")
        if known is None:
            known = torch.ones(batch["states"].shape[0], dtype=torch.bool, device=batch["states"].device)
        out = self(batch["states"], batch["actions"], batch["returns_to_go"], batch["timesteps"],
                   batch["attention_mask"], rtg_known=known)
        real = batch["attention_mask"].bool()
        metrics = {}
        if self.discrete:
            logits = out.action_preds[real]
            targets = batch["action_targets"][real].long()
            action_loss = F.cross_entropy(logits, targets)
            metrics["action_acc"] = float((logits.argmax(-1) == targets).float().mean())
        else:
            action_loss = F.mse_loss(out.action_preds[real], self.action_inputs(batch["action_targets"])[real])

        def masked_mse(pred, target, rows):
            m = real & rows[:, None]
            return F.mse_loss(pred[..., 0][m], target[m]) if m.any() else pred.sum() * 0.0

        return_loss = masked_mse(out.return_preds, batch["next_returns"], known)
        value_loss = masked_mse(out.value_preds, batch["returns_to_go"][..., 0], ~known)
        hp = self.hp
        total = hp["action_weight"] * action_loss + hp["return_weight"] * return_loss + hp["value_weight"] * value_loss
        metrics.update(loss=float(total.detach()), action_loss=float(action_loss.detach()), return_loss=float(return_loss.detach()),
                       value_loss=float(value_loss.detach()))
        return total, metrics

    # ---- rollouts ----------------------------------------------------------------------------------------
    def start_rollout(self, n_envs: int, target_returns=None, sample: bool = True, seed: int = 0,
                      use_cache: bool = True, uniforms: np.ndarray | None = None, context=None,
                      record_attention: bool = False, interventions=None) -> "DTRollout":
        """Batched rollout, all envs at the same t. Discrete actions are sampled from the softmax (seeded
        generator; sample=False: argmax); continuous ones are the tanh output scaled to the action bounds.
        use_cache=False is the exact naive twin (recomputes the receptive field every step); both give the
        same actions from the same random draws. uniforms [n_envs, T] replaces the generator: env i's
        draw at step t is uniforms[i, t], so an episode samples alike whatever batch it runs in.
        context: an int or [n_envs] ints K' >= 1, the steps of history env i's action may see: keys older
        than its last K' steps are masked out, exactly a left-padded window of K' steps with absolute
        timesteps (recomputed every step, no cache; K' >= the receptive field = the model's own rollout).
        record_attention: after each act(), `attention` [n_envs, n_layer, n_head, K, 3] holds the action
        (s_t) token's attention over the last K steps (oldest first) x (R, s, a) tokens.
        interventions: {name or glob: fn} on the blocks' activations (`blocks.{i}.*`, models/activations.py),
        applied at every step, on every path (the KV cache then holds the intervened keys and values). The
        cached path feeds only each step's new tokens (2 or 3) through the blocks, a recompute the whole
        window: a function must not depend on the number of tokens it is given (zeroing or replacing a head's
        output by a fixed vector does not). None or {}: the plain rollout, unchanged."""
        if target_returns is None:
            raise ValueError("a Decision Transformer rollout needs target_returns (raw return units, one per env).")
        return DTRollout(self, n_envs, target_returns, sample=sample, seed=seed, use_cache=use_cache, uniforms=uniforms,
                         context=context, record_attention=record_attention, interventions=interventions)


class DTRollout:
    """Acts in n_envs environments at once. Native (banded) models keep a sliding KV cache of the last K
    steps per layer, exact by design. HF imports (plain causal, their own semantics = the last K steps)
    cache while t < K and recompute the last-K window after that. The twin (use_cache=False) recomputes
    the last n_layer*K steps (the receptive field) with the banded mask, or the last K for HF imports.
    Interventions (start_rollout) ride on a per-forward ActivationRun through every path; without them no
    run is made and every path is the plain one."""

    def __init__(self, model: DecisionTransformer, n_envs: int, target_returns, sample: bool, seed: int,
                 use_cache: bool, uniforms: np.ndarray | None = None, context=None, record_attention: bool = False,
                 interventions=None):
        self.m, self.B, self.sample, self.use_cache = model, n_envs, sample, use_cache
        self.names, self.interventions = None, None   # exact names -> fn; None: the plain path (no run at all)
        if interventions:
            names = model.activation_names()
            resolved = ActivationRun(names, [], interventions, what="dt agent").interventions   # checks names and fns
            outside = sorted(n for n in resolved if not n.startswith("blocks."))
            if outside:
                raise ValueError(f"a rollout applies interventions inside the blocks (blocks.{{i}}.*); "
                                 f"not {', '.join(outside)}.")
            self.names, self.interventions = names, resolved
        if uniforms is not None and np.shape(uniforms)[0] != n_envs:
            raise ValueError(f"uniforms needs one row per env ({n_envs}), got {np.shape(uniforms)[0]}.")
        self.uniforms = None if uniforms is None else torch.as_tensor(np.asarray(uniforms, np.float32))
        dev = model.action_low.device
        target = np.broadcast_to(np.asarray(target_returns, np.float32), (n_envs,))
        self.rtg = torch.as_tensor(target / model.config.rtg_scale, device=dev, dtype=torch.float32).clone()
        self.gen = torch.Generator(device=dev).manual_seed(seed)
        self.t = 0
        self.prev_action = None          # model-space action of the last step [B, action_in]
        K = model.context_length
        self.window = model.hp["n_layer"] * K if model.hp["banded"] else K
        self.history = deque(maxlen=self.window)   # (state, rtg, timestep) per step, for recomputes
        self.actions = deque(maxlen=self.window)
        self.cache = None                # per layer (k, v) [B, H, T, hd]
        self.cache_pos = None            # token positions of the cached keys [T]
        self.warned = False
        self.context = None              # per-env K' [B] (None: the model's own receptive field)
        if context is not None:
            ks = np.broadcast_to(np.asarray(context, np.int64), (n_envs,))
            if ks.min() < 1:
                raise ValueError(f"context must be at least 1 step, got {int(ks.min())}.")
            self.context = torch.as_tensor(ks.copy(), device=dev)
        self.live = None                 # [B] bool: envs still acting (skip_done); None = all
        self.record_attention = record_attention
        self.attention = None            # [B, n_layer, n_head, K, 3] after act() when record_attention

    def _run(self) -> ActivationRun | None:
        """A fresh per-call run carrying the interventions (one per forward, never shared), or None."""
        return None if self.interventions is None else ActivationRun(self.names, [], self.interventions, what="dt agent")

    def skip_done(self, done: np.ndarray) -> None:
        """Envs whose episodes ended: their later actions are ignored, so the context-limited path stops
        computing them (the other paths keep the batch whole, their cache is per batch)."""
        self.live = torch.as_tensor(~np.asarray(done, bool).reshape(self.B))

    def _timestep(self, t: int) -> int:
        max_ep_len = self.m.config.max_ep_len
        if t >= max_ep_len and not self.warned:
            self.warned = True
            clip_timesteps(np.array([t]), max_ep_len)   # the warning
        return min(t, max_ep_len - 1)

    def act(self, obs: np.ndarray) -> np.ndarray:
        m = self.m
        with _eval_mode(m):
            dev = m.action_low.device
            s = m.normalize(torch.as_tensor(np.asarray(obs), device=dev, dtype=torch.float32).reshape(self.B, -1))
            ts = self._timestep(self.t)
            self.history.append((s, self.rtg.clone(), ts))
            if self.prev_action is not None:
                self.actions.append(self.prev_action)
            if self.context is not None:
                pred = self._recompute(self.context)
            elif self.use_cache and (m.hp["banded"] or self.t < m.context_length):
                pred = self._step_cached(s, ts)
            else:
                pred = self._recompute()
            action, model_action = self._choose(pred)
            self.prev_action = model_action
            self.last_pred = pred        # the action head's output [B, action_in] (policy(): what it proposed)
            self.t += 1
            return action

    def take(self, actions) -> None:
        """After act(): the envs take `actions` [B] (env units) instead of what the model chose (live play: the user
        acts). Only the a_t token fed next step changes, exactly as if the model had chosen them: no cache holds it yet."""
        if self.t == 0:
            raise ValueError("take() replaces the action of the last act(); call act() first.")
        self.prev_action = self.m.action_inputs(np.asarray(actions).reshape(self.B, *np.shape(actions)[1:])) \
            .reshape(self.B, -1).float()

    def policy(self) -> np.ndarray:
        """What the last act() proposed: action probabilities [B, n_actions] (discrete) or the action [B, act_dim]
        in env units (continuous)."""
        if self.t == 0:
            raise ValueError("policy() describes the last act(); call act() first.")
        if self.m.discrete:
            return self.last_pred.float().softmax(-1).cpu().numpy()
        return self.m.env_actions(self.last_pred.clamp(-1, 1)).cpu().numpy()

    def value(self) -> np.ndarray:
        """[B] the value head at the current s_t (raw return units): the return the model infers from the history
        with every return-to-go hidden (rtg_known=False), over the window the agent acts on."""
        m = self.m
        if self.t == 0:
            raise ValueError("value() reads the history of the last act(); call act() first.")
        with _eval_mode(m):
            out = m(*self._inputs(list(self.history)), rtg_known=False)
            return (out.value_preds[:, -1, 0] * m.config.rtg_scale).cpu().numpy().astype(np.float64)

    def observe(self, rewards: np.ndarray) -> None:
        r = torch.as_tensor(np.asarray(rewards, np.float32).reshape(self.B), device=self.rtg.device)
        self.rtg = self.rtg - r / self.m.config.rtg_scale

    def _choose(self, pred: torch.Tensor):
        m = self.m
        if m.discrete:
            probs = pred.float().softmax(-1)
            if self.uniforms is not None:
                u = self.uniforms[:, min(self.t, self.uniforms.shape[1] - 1)].to(probs.device)
            else:
                u = torch.rand(self.B, generator=self.gen, device=probs.device)   # drawn either way: same stream
            if self.sample:   # inverse CDF on one uniform per env
                a = (probs.cumsum(-1) < u[:, None] * probs.sum(-1, keepdim=True)).sum(-1).clamp(max=m.action_in - 1)
            else:
                a = probs.argmax(-1)
            return a.cpu().numpy().astype(np.int64), F.one_hot(a, m.action_in).float()
        y = pred.clamp(-1, 1)
        return m.env_actions(y).cpu().numpy().astype(np.float32), y

    def _recompute(self, ks: torch.Tensor | None = None) -> torch.Tensor:
        """Forward over the last `window` steps (all envs share t, so no padding); the current action is a
        zero placeholder, which the s_t prediction never sees (causal). ks [B]: env i sees only its last
        ks[i] steps (the window shrinks to the largest; only live envs are computed)."""
        m = self.m
        history = list(self.history) if ks is None else list(self.history)[-min(int(ks.max()), self.window):]
        L = len(history)
        states, acts, rtg, ts = self._inputs(history)
        if ks is None:
            out = m(states, acts, rtg, ts, output_attentions=self.record_attention, activations=self._run())
            self._keep_attention(out.attentions, None, L)
            return out.action_preds[:, -1]
        rows = torch.arange(self.B) if self.live is None else torch.as_tensor(np.flatnonzero(self.live.numpy()))
        mask = (torch.arange(L, device=states.device)[None, :] >= (L - ks[rows])[:, None]).long()
        out = m(states[rows], acts[rows], rtg[rows], ts[rows], mask, output_attentions=self.record_attention,
                activations=self._run())
        pred = torch.zeros(self.B, *out.action_preds.shape[2:], device=states.device)
        pred[rows] = out.action_preds[:, -1]
        self._keep_attention(out.attentions, rows, L)
        return pred

    def _inputs(self, history: list):
        """forward()'s (states, actions, returns_to_go, timesteps) [B, L, ...] over these last L steps of the history;
        the current action is a zero placeholder."""
        L = len(history)
        states = torch.stack([h[0] for h in history], 1)
        rtg = torch.stack([h[1] for h in history], 1)[..., None]
        ts = torch.tensor([h[2] for h in history], device=states.device).expand(self.B, -1)
        acts = list(self.actions)[-(L - 1):] if L > 1 else []
        acts = torch.stack(acts + [torch.zeros(self.B, self.m.action_in, device=states.device)], 1)
        return states, acts, rtg, ts

    def _keep_attention(self, attentions, rows, L: int) -> None:
        """The s_t query's row of each layer's attention [B, H, 3L, 3L] -> [B, n_layer, H, K, 3]."""
        if not self.record_attention:
            return
        K, A = self.m.context_length, min(L, self.m.context_length)
        q = 3 * (L - 1) + 1
        att = torch.stack([a[:, :, q, 3 * (L - A):] for a in attentions], 1)   # [b, n_layer, H, 3A]
        out = torch.zeros(self.B, att.shape[1], att.shape[2], K, 3, device=att.device)
        out[rows if rows is not None else slice(None), :, :, K - A:] = att.reshape(*att.shape[:3], A, 3)
        self.attention = out.cpu().numpy()

    def _step_cached(self, s: torch.Tensor, ts: int) -> torch.Tensor:
        """Feed only the new tokens (a_{t-1}, R_t, s_t) through the layers against the cached keys/values."""
        m, t = self.m, self.t
        dev = s.device
        tok_r = m._embed_return(self.rtg[:, None], True) + m.embed_timestep.weight[ts]
        tok_s = m.embed_state(s) + m.embed_timestep.weight[ts]
        new, pos = [tok_r, tok_s], [3 * t, 3 * t + 1]
        if self.prev_action is not None:
            t_prev = self._timestep(t - 1)
            new.insert(0, m.embed_action(self.prev_action) + m.embed_timestep.weight[t_prev])
            pos.insert(0, 3 * (t - 1) + 2)
        x = m._finish_tokens(torch.stack(new, 1))
        q_pos = torch.tensor(pos, device=dev)
        k_pos = q_pos if self.cache_pos is None else torch.cat([self.cache_pos, q_pos])
        allowed = _allowed(q_pos, k_pos, m.band)
        new_cache, atts = [], []
        run = self._run()
        for i, block in enumerate(m.encoder["h"]):
            x, att, kv = block(x, allowed, None if self.cache is None else self.cache[i], run)
            new_cache.append(kv)
            if self.record_attention:
                atts.append(att[:, :, -1])
        if self.record_attention:   # the s_t query over keys k_pos -> (steps back, token type)
            K = m.context_length
            slot = K - 1 - (t - k_pos // 3)
            seen = slot >= 0
            out = torch.zeros(self.B, len(atts), atts[0].shape[1], K, 3, device=dev)
            out[:, :, :, slot[seen], (k_pos % 3)[seen]] = torch.stack(atts, 1)[..., seen]
            self.attention = out.cpu().numpy()
        # keep the keys the next step's queries can see: steps >= t - K + 1 (all of them for HF imports)
        keep = k_pos // 3 > t - m.context_length if m.hp["banded"] else torch.ones_like(k_pos, dtype=torch.bool)
        if not bool(keep.all()):
            first = int(torch.argmax(keep.int()))
            new_cache = [(k[:, :, first:], v[:, :, first:]) for k, v in new_cache]
            k_pos = k_pos[first:]
        self.cache, self.cache_pos = new_cache, k_pos
        return m._action_head(m.encoder["ln_f"](x[:, -1]))
