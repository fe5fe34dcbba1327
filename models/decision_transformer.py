"""Decision Transformer (Chen et al. 2021, arXiv 2106.01345), nanoGPT style: the model. Its blocks are the one
transformer block of models/block.py (shared with the Trajectory Transformer); acting is models/dt_rollout.py;
partial forwards (run_suffix, last_state_only) run through models/dt_partial.py; sizes come typed from
models/configs.py (DTConfig).

Each step t is three tokens (R_t, s_t, a_t): return-to-go, state, action, each with its own linear
embedding plus a learned *absolute* timestep embedding, then a GPT-2 stack. The action is predicted from
the s_t token; return_preds / state_preds come from the a_t token (as in HF's DecisionTransformerModel);
value_preds come from the s_t token of sequences whose returns-to-go are hidden (see `forward`).

Parameter names follow HF's DecisionTransformerModel so an HF checkpoint is a mapping (models/hf_import.py):
embed_timestep, embed_return, embed_state, embed_action, embed_ln, encoder.h.{i}.{ln_1, attn.c_attn,
attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}, encoder.ln_f, predict_state, predict_action, predict_return.
(HF's Conv1D stores weights [in, out]; ours are nn.Linear [out, in].) Read weights through the accessors
(`blocks[i].attn.W_Q` ..., `ln_final`, `W_U(output)`, `b_U(output)`, `output_head(output)`), not these names.

Attention is banded causal: a token sees only tokens of its own and the K-1 previous steps
(K = context_length). On windows of <= K steps that is plain causal attention (what HF computes); over
longer sequences it makes a sliding KV cache of the last K steps exact: the cache *is* the model's
semantics, not an approximation of it (ARCHITECTURE.md). Training uses windows of n_layer*K steps, so the
band (not the window edge) is what limits the context the model learns with, as in rollouts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import dt_partial, dt_tokens
from .activations import ActivationRun, layer_norm
from .base import Agent, AgentConfig, gpt2_init
from .block import Block, NoNorm, allowed_keys, run_blocks
from .configs import DTConfig
from .dt_rollout import DTRollout
from .hparams import defaults
from .state_encoders import make_state_encoder
from .windows import TrainingData, clip_timesteps, sample_windows

DEFAULTS = defaults("dt")   # models/hparams.py: DTHparams holds every default, with what each means
OUTPUTS = ("action", "return", "state", "value")   # the output heads, by name


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

    def __getattribute__(self, key: str):
        value = object.__getattribute__(self, key)
        if key == "state_preds" and callable(value):   # the untrained state head, computed when first read: over
            value = value()                            # frame stacks it is [B, L, 28224] floats nothing shows
            object.__setattr__(self, key, value)
        return value


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
                                              projection: z_k @ blocks[i].attn.W_O[k], z_k the head's
                                              attention-weighted values; no bias, so
                                              sum over heads + blocks[i].attn.b_O == attn.out (eval mode).
                                              Computed only when requested or intervened on.
      blocks.{i}.attn.out         [B, T, H]   the attention block's output (c_proj incl. bias, after dropout)
      blocks.{i}.resid_mid        [B, T, H]   resid_pre + attn.out
      blocks.{i}.mlp.hidden       [B, T, n_inner]  the MLP's activations (after the nonlinearity)
      blocks.{i}.mlp.out          [B, T, H]   the MLP block's output (after dropout)
      blocks.{i}.resid_post       [B, T, H]   resid_mid + mlp.out (= hidden_states[i] of forward)
      ln_final.scale              [B, T, 1]   the final layer norm's per-token 1 / sqrt(var + eps)
      ln_final.out                [B, T, H]   (resid_post - mean) * scale * ln_final.weight + ln_final.bias
      head.action                 [B, L, n_actions | act_dim]  action_preds (from s_t; tanh applied if continuous)
      head.return                 [B, L, 1]   return_preds (from a_t)
      head.state                  [B, L, obs_dim]  state_preds (from a_t; untrained, as in HF)
      head.value                  [B, L, 1]   value_preds (from s_t)
    run_with_cache(..., last_state_only=True) computes only what the last step's s_t token needs (see there).
    """

    family = "a Decision Transformer"   # how pages name the family to users
    capabilities = frozenset({"action", "return", "value", "state", "attention", "kv_cache", "return_conditioned",
                              "acts", "step_tokens", "partial_forward"})

    def __init__(self, config: AgentConfig):
        cfg = DTConfig.build(config)
        super().__init__(replace(config, hparams=cfg.hparams()))
        self.cfg = cfg
        self.hp = self.config.hparams   # the checkpoint's dict, for callers that read it; the model reads cfg
        H = cfg.hidden
        self.action_in = cfg.action_in   # one-hot width or action vector size

        # time_embedding "linear" (DTI): Linear(1, H) of the timestep as a number; otherwise a table of timesteps
        self.embed_timestep = nn.Linear(1, H) if cfg.time_embedding == "linear" else nn.Embedding(cfg.max_ep_len, H)
        self.embed_return = nn.Linear(1, H)
        self.embed_state = make_state_encoder(cfg.state_encoder, cfg.shape, H)   # models/state_encoders.py
        self.embed_action = nn.Linear(self.action_in, H)
        self.embed_ln = nn.LayerNorm(H) if cfg.embed_ln else nn.Identity()
        if cfg.position_embedding == "tokens":
            # a learned table over token positions in the window (DTI's transformer.pos_embed.W_pos, the DT paper's
            # Atari pos_emb); row p is added to the p-th token (R, s, a per step) counted from the window's first step
            self.wpe_tokens = nn.Parameter(torch.zeros(cfg.positions, H))
        if cfg.padding == "dti":
            # DTI's pad action: row n_actions of its action embedding (initialize_padding_inputs' action_pad_token)
            self.action_pad = nn.Parameter(torch.zeros(H))
        # Value head: with R_t as an input, predicting the return is a copy. A Key-to-Door analysis looks for
        # memory (was the key taken in phase 1?), which only shows in a prediction that must infer the return
        # from the history. So some training sequences get this learned "unknown return" embedding in
        # place of every R token, and predict_value learns R_t (scaled) from them alone.
        self.return_unknown = nn.Parameter(torch.zeros(H))
        if cfg.hf_wpe:
            self.wpe = nn.Parameter(torch.zeros(H))
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleDict({"h": nn.ModuleList([Block(cfg.block(), i) for i in range(cfg.n_layer)]),
                                      "ln_f": nn.LayerNorm(H, eps=cfg.layer_norm_eps) if cfg.layer_norm else NoNorm()})
        if not cfg.native_tokens:
            # window-relative positions, tanh'd embeddings or attended pads: a sliding KV cache and the partial
            # forwards would not compute this model's tokens, so analyses and rollouts take the whole forward
            self.capabilities = type(self).capabilities - {"kv_cache", "partial_forward"}
        self.predict_state = nn.Linear(H, cfg.obs_dim)
        self.predict_action = nn.Linear(H, self.action_in)
        self.predict_return = nn.Linear(H, 1)
        self.predict_value = nn.Linear(H, 1)
        self.apply(gpt2_init)
        for name, p in self.named_parameters():   # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))

    @property
    def band(self) -> int | None:
        """Steps a token attends back over (K), or None for plain causal attention (HF imports)."""
        return self.cfg.band

    @property
    def n_layer(self) -> int:
        return int(self.cfg.n_layer)

    @property
    def n_head(self) -> int:
        return int(self.cfg.n_head)

    # ---- weights (TransformerLens names; views of the parameters: read them, never write) -------------------
    @property
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks (models/block.py: blocks[i].attn.W_Q / W_K / W_V / W_O / b_O, blocks[i].mlp.W_in ...)."""
        return self.encoder["h"]

    @property
    def ln_final(self) -> nn.LayerNorm:
        """The final layer norm (weight, bias, eps) every output head reads; a models.block.NoNorm (the identity,
        `centres` False) where the model has none."""
        return self.encoder["ln_f"]

    def output_head(self, output: str) -> nn.Linear:
        """The linear head of `output` (one of OUTPUTS: action, return, state, value); action before any tanh."""
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}.")
        return getattr(self, f"predict_{output}")

    def W_U(self, output: str = "action") -> torch.Tensor:
        """[hidden, out] the head's weight as an unembedding: preds = ln_final(resid) @ W_U + b_U."""
        return self.output_head(output).weight.T

    def b_U(self, output: str = "action") -> torch.Tensor:
        return self.output_head(output).bias

    @property
    def receptive_field(self) -> int:
        """Steps of history the action at t depends on while acting: a banded DT sees K steps per layer and
        each key was itself computed from K steps before it (n_layer * K, what its cached rollout
        computes); an HF import attends to its last K steps only."""
        K = self.config.context_length
        return self.n_layer * K if self.cfg.banded else K

    def card(self) -> dict:
        cfg = self.cfg
        source = cfg.hf_import
        if cfg.banded:
            attention = f"banded causal, last {self.context_length} steps"
        elif source is None:
            attention = "causal"
        else:
            attention = {"corl": "causal (CORL import)", "dti": "causal over DTI's padded K-step window (DTI import)",
                         "dt-atari": "causal over the last K steps (DT paper's Atari import)"}.get(
                str(source).partition(":")[0], "causal (HF import)")
        return {**super().card(), "hidden": cfg.hidden, "layers": cfg.n_layer, "heads": cfg.n_head,
                "attention": attention, "rtg_scale": self.config.rtg_scale, "max_ep_len": cfg.max_ep_len,
                "hf_import": cfg.hf_import}

    # ---- embedding ---------------------------------------------------------------------------------------
    def _timesteps(self, timesteps: torch.Tensor) -> torch.Tensor:
        if timesteps.numel() and int(timesteps.max()) >= self.config.max_ep_len:
            clipped = clip_timesteps(timesteps.detach().cpu().numpy(), self.config.max_ep_len)  # warns
            timesteps = torch.as_tensor(clipped, device=timesteps.device)
        return timesteps.clamp(min=0)

    def _finish_tokens(self, tok: torch.Tensor) -> torch.Tensor:
        tok = self.embed_ln(tok)
        if self.cfg.hf_wpe:
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

    def obs_transform(self, obs: np.ndarray) -> np.ndarray:
        """Raw observations [..., *obs_shape] (windows of shaped data: uint8 frames, grids) -> float32 normalised with
        the agent's state statistics laid out in the observation's shape (models/windows.py's hook): what
        `normalize` does to flat rows."""
        shape = self.cfg.shape
        mean = self.state_mean.cpu().numpy().reshape(shape)
        std = self.state_std.cpu().numpy().reshape(shape)
        out = np.subtract(obs, mean, dtype=np.float32)   # the same numbers as (float32(obs) - mean) / std, in two passes
        out /= std                                        # over the frames, not three (frame stacks: 28,224 values each)
        return out

    def env_actions(self, action_preds: torch.Tensor) -> torch.Tensor:
        """Continuous model outputs in [-1, 1] -> env actions in [action_low, action_high]."""
        return self.unit_to_actions(action_preds)

    # ---- forward -----------------------------------------------------------------------------------------
    def forward(self, states, actions, returns_to_go, timesteps, attention_mask=None,
                output_attentions: bool = False, output_hidden_states: bool = False, rtg_known=True,
                activations: ActivationRun | None = None, state_embeds: torch.Tensor | None = None) -> DTOutput:
        """states [B, L, *obs_shape] or [B, L, obs_dim] (normalised); actions [B, L, n_actions one-hot | act_dim in
        [-1, 1]]; returns_to_go [B, L, 1] (scaled); timesteps [B, L]; attention_mask [B, L] (1 real, 0 left pad);
        rtg_known: True, False or a [B] bool tensor — sequences marked False see `return_unknown` in
        place of every R token (use value_preds of those). activations: the per-call record/intervene
        run of `run_with_cache` (None: the plain forward).

        padding "dti" (DTI imports): the window is DTI's, always K steps: a shorter one is left-padded to K, and
        pad steps (mask 0) are DTI's pad tokens, attended to like any other (see `models.dt_tokens.dti_window`); outputs are
        those of the L steps given, named activations and attentions those of the K-step window.

        state_embeds [B, L, H]: embed_state(states) computed already (states may then be None): analyses that run
        one batch of windows at several context lengths slice them instead of re-encoding frames per length (an
        Atari conv stack). Not with DTI padding (its pad steps are states)."""
        run = activations
        states = _given_states(self, states, state_embeds)
        L_in = states.shape[1]
        pads = None
        if self.cfg.padding == "dti":
            states, actions, returns_to_go, timesteps, pads = dt_tokens.dti_window(self, states, actions, returns_to_go,
                                                                                   timesteps, attention_mask)
            attention_mask = None   # DTI attends to its pads
            if run is not None and states.shape[1] > L_in:
                run = dt_tokens.CallersSteps(run, states.shape[1] - L_in)
        B, L = states.shape[:2]
        x = self._finish_tokens(self._tokens(states, actions, returns_to_go, timesteps, rtg_known, run,
                                             attention_mask, pads, state_embeds))
        pos = torch.arange(3 * L, device=x.device)
        valid = None if attention_mask is None else attention_mask.bool().repeat_interleave(3, dim=1)
        x, attns, _, hiddens = run_blocks(self.blocks, x, allowed_keys(pos, pos, self.band, valid, per_step=3), run=run)
        x = self._ln_final(x, run).reshape(B, L, 3, -1)[:, L - L_in:]
        if L > L_in:   # the caller's steps only: DTI's prepended pads stay inside
            c = 3 * (L - L_in)
            attns, hiddens = [a[:, :, c:, c:] for a in attns], [h[:, c:] for h in hiddens]
        if isinstance(run, dt_tokens.CallersSteps):
            run = run.run
        out = DTOutput(action_preds=self._action_head(x[:, :, 1]), return_preds=self.predict_return(x[:, :, 2]),
                       state_preds=self._state_head(x, run), value_preds=self.predict_value(x[:, :, 1]),
                       attentions=tuple(attns) if output_attentions else None,
                       hidden_states=tuple(hiddens) if output_hidden_states else None)
        if run is not None:
            out.action_preds = run("head.action", out.action_preds)
            out.return_preds = run("head.return", out.return_preds)
            if run.wants("head.state"):
                out.state_preds = run("head.state", out.state_preds)
            out.value_preds = run("head.value", out.value_preds)
        return out

    def _state_head(self, x: torch.Tensor, run: ActivationRun | None):
        """predict_state on the a_t tokens, now when a run records it, else on first read (DTOutput)."""
        if run is not None and run.wants("head.state"):
            return self.predict_state(x[:, :, 2])

        def late() -> torch.Tensor:
            with torch.inference_mode(x.is_inference()):   # an inference-mode forward's tensors stay in that mode
                return self.predict_state(x[:, :, 2])
        return late

    def _ln_final(self, x: torch.Tensor, run: ActivationRun | None) -> torch.Tensor:
        if self.cfg.layer_norm:
            return layer_norm(self.ln_final, x, run, "ln_final.")
        if run is not None:   # no final layer norm (DTI's layer_norm None): scale 1, out the stream itself
            run("ln_final.scale", torch.ones_like(x[..., :1]))
            x = run("ln_final.out", x)
        return x

    def _tokens(self, states, actions, returns_to_go, timesteps, rtg_known, run, attention_mask=None,
                pads=None, state_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """The interleaved token embeddings [B, 3L, H] (R, s, a per step), timestep (and position) included.
        pads [B, L] bool (DTI padding): those steps' a tokens are DTI's pad action. Imported architectures' parts
        (time embedding kinds, the position table, DTI's window) are models/dt_tokens.py's."""
        B, L = states.shape[:2]
        cfg = self.cfg
        t = dt_tokens.time_embedding(self, timesteps, attention_mask)
        s = self.embed_state(states) if state_embeds is None else state_embeds
        r, a = self._embed_return(returns_to_go, rtg_known), self.embed_action(actions)
        if pads is not None:
            a = torch.where(pads[..., None], self.action_pad, a)
        if cfg.embed_tanh:   # DT paper, Atari: ret_emb, state_encoder and action_embeddings end in Tanh
            r, s, a = torch.tanh(r), torch.tanh(s), torch.tanh(a)
        if run is None:
            tok = torch.stack([r + t, s + t, a + t], dim=2).reshape(B, 3 * L, -1)
        else:
            tok = torch.stack([run("embed.R", r + t), run("embed.s", s + t), run("embed.a", a + t)],
                              dim=2).reshape(B, 3 * L, -1)
        if cfg.position_embedding == "tokens":
            tok = tok + dt_tokens.token_positions(self, B, L, attention_mask, tok.device)
        return tok

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
        if not self.cfg.native_tokens:   # imported tokens (positions, DTI pads): the whole forward, cut to match
            return dt_tokens.last_state_whole(self, run, inputs)
        return self._last_state(run=run, **inputs), run.cache

    def _last_state(self, states, actions, returns_to_go, timesteps, attention_mask=None, rtg_known=True,
                    run: ActivationRun | None = None, state_embeds: torch.Tensor | None = None) -> DTOutput:
        states = _given_states(self, states, state_embeds)
        L = states.shape[1]
        # every token up to the last s_t: the last a_t comes after it, and s_t never sees it
        x = self._finish_tokens(self._tokens(states, actions, returns_to_go, timesteps, rtg_known, run,
                                             state_embeds=state_embeds)[:, :-1])
        valid = None if attention_mask is None else attention_mask.bool().repeat_interleave(3, dim=1)
        y, _ = dt_partial.suffix_stream(self, 0, x, torch.arange(3 * L - 1, device=x.device), valid=valid, run=run)
        y = layer_norm(self.ln_final, y, run, "ln_final.")
        out = DTOutput(action_preds=self._action_head(y), return_preds=None, state_preds=None,
                       value_preds=self.predict_value(y))
        if run is not None:
            out.action_preds = run("head.action", out.action_preds)
            out.value_preds = run("head.value", out.value_preds)
        return out

    def keys_values(self, block: int, resid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Block `block`'s attention keys and values [B, heads, T, hd] of tokens whose resid_pre is resid [B, T, H]
        (ln_1, then c_attn): what its queries see of those tokens (`run_suffix`'s past)."""
        return dt_partial.keys_values(self, block, resid)

    def run_suffix(self, start_block: int, resid: torch.Tensor, pos, past=None, extend=None, queries_from=None,
                   valid: torch.Tensor | None = None) -> DTOutput:
        """Blocks start_block..n_layer-1 on a few tokens against cached keys/values, read out at the last token:
        what an intervention on `blocks.{start_block}.resid_pre` changes, without recomputing what it cannot
        (models/dt_partial.py).

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
        x, pos = dt_partial.suffix_stream(self, start_block, resid, pos, past, extend, queries_from, valid)
        y = self.ln_final(x[:, -1:])
        kind = int(pos[-1]) % 3
        return DTOutput(action_preds=self._action_head(y) if kind == 1 else None,
                        return_preds=self.predict_return(y) if kind == 2 else None,
                        state_preds=self.predict_state(y) if kind == 2 else None,
                        value_preds=self.predict_value(y) if kind == 1 else None)

    def _action_head(self, x_state):
        a = self.predict_action(x_state)
        return torch.tanh(a) if (not self.discrete and self.cfg.action_tanh) else a

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
        w = sample_windows(data, batch_size, self.cfg.train_window, rng)
        batch = self.window_inputs(w)
        dev = batch["states"].device
        batch["action_targets"] = torch.as_tensor(w["actions"], device=dev)
        # R_{t+1} = R_t - r_t / scale: what return_preds (from the a_t token) predicts
        batch["next_returns"] = batch["returns_to_go"][..., 0] - torch.as_tensor(
            w["rewards"], device=dev, dtype=torch.float32) / self.config.rtg_scale
        batch["rtg_known"] = torch.as_tensor(rng.random(batch_size) >= self.cfg.rtg_dropout, device=dev)
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
        cfg = self.cfg
        total = cfg.action_weight * action_loss + cfg.return_weight * return_loss + cfg.value_weight * value_loss
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


def _given_states(model: DecisionTransformer, states, state_embeds):
    """states, or (given state_embeds only) a stand-in whose first two dimensions are the window's [B, L]: nothing
    reads more of it."""
    if state_embeds is None:
        return states
    if model.cfg.padding == "dti":
        raise ValueError("state_embeds cannot be given to a DT with DTI padding: its pad steps are states.")
    if state_embeds.dim() != 3 or state_embeds.shape[-1] != model.cfg.hidden:
        raise ValueError(f"state_embeds must be [B, L, {model.cfg.hidden}], got {tuple(state_embeds.shape)}.")
    return state_embeds if states is None else states
