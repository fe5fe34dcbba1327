"""The Decision Transformer acting in a batch of environments: `DTRollout` (what `DecisionTransformer.start_rollout`
returns), its KV-cached step, the exact recompute twin, context-limited acting, recorded attention, and live play's
take / policy / value.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from .activations import ActivationRun
from .base import Agent, inference
from .block import allowed_keys, run_blocks
from .windows import clip_timesteps


class DTRollout:
    """Acts in n_envs environments at once. Native (banded) models keep a sliding KV cache of the last K
    steps per layer, exact by design. HF imports (plain causal, their own semantics = the last K steps)
    cache while t < K and recompute the last-K window after that. The twin (use_cache=False) recomputes
    the last n_layer*K steps (the receptive field) with the banded mask, or the last K for HF imports.
    Interventions (start_rollout) ride on a per-forward ActivationRun through every path, and recorded attention is
    read from that run's `blocks.{i}.attn.pattern`; with neither, no run is made and every path is the plain one."""

    def __init__(self, model: Agent, n_envs: int, target_returns, sample: bool, seed: int,
                 use_cache: bool, uniforms: np.ndarray | None = None, context=None, record_attention: bool = False,
                 interventions=None):
        self.m, self.B, self.sample, self.use_cache = model, n_envs, sample, use_cache
        self.interventions = None        # exact names -> fn
        self.names = model.activation_names() if interventions or record_attention else None   # None: no run at all
        self.kept = ["blocks.*.attn.pattern"] if record_attention else []
        if interventions:
            names = self.names
            resolved = ActivationRun(names, [], interventions, what="dt agent").interventions   # checks names and fns
            outside = sorted(n for n in resolved if not n.startswith("blocks."))
            if outside:
                raise ValueError(f"a rollout applies interventions inside the blocks (blocks.{{i}}.*); "
                                 f"not {', '.join(outside)}.")
            self.interventions = resolved
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
        self.window = model.receptive_field   # n_layer * K steps (banded), or K
        self.history = deque(maxlen=self.window)   # (state, rtg, timestep, embedded state | None) per step
        # a conv state encoder (Atari frame stacks) embeds each step's frame once, when it arrives: recomputing the
        # window ran the conv stack over all K frames of every env at every step (a return sweep of breakout-dt took
        # minutes). Linear encoders keep embedding the window (cheap, and their recorded outputs stay bit-identical).
        self.embed = model.cfg.state_encoder == "atari_conv" and model.cfg.padding != "dti"
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
        """A fresh per-call run carrying the interventions and recording the attention patterns (one per forward,
        never shared), or None."""
        return None if self.names is None else ActivationRun(self.names, self.kept, self.interventions, what="dt agent")

    def _patterns(self, run: ActivationRun | None) -> list[torch.Tensor]:
        """Each block's attention pattern [B, heads, Tq, Tk] of the run's forward (recorded attention only)."""
        return [run.cache[f"blocks.{i}.attn.pattern"] for i in range(self.m.n_layer)] if self.record_attention else []

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
        with inference(m):
            dev = m.action_low.device
            s = m.normalize(torch.as_tensor(np.asarray(obs), device=dev, dtype=torch.float32).reshape(self.B, -1))
            ts = self._timestep(self.t)
            self.history.append((s, self.rtg.clone(), ts, m.embed_state(s) if self.embed else None))
            if self.prev_action is not None:
                self.actions.append(self.prev_action)
            if self.context is not None:
                pred = self._recompute(self.context)
            elif self.use_cache and m.has("kv_cache") and (m.band is not None or self.t < m.context_length):
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
        with inference(m):
            states, acts, rtg, ts = self._inputs(list(self.history))
            out = m(states, acts, rtg, ts, rtg_known=False, state_embeds=self._embeds(list(self.history)))
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
        emb = self._embeds(history)
        if ks is None:
            out = m(states, acts, rtg, ts, activations=(run := self._run()), state_embeds=emb)
            self._keep_attention(self._patterns(run), None, L)
            return out.action_preds[:, -1]
        rows = torch.arange(self.B) if self.live is None else torch.as_tensor(np.flatnonzero(self.live.numpy()))
        mask = (torch.arange(L, device=states.device)[None, :] >= (L - ks[rows])[:, None]).long()
        out = m(states[rows], acts[rows], rtg[rows], ts[rows], mask, activations=(run := self._run()),
                state_embeds=None if emb is None else emb[rows])
        pred = torch.zeros(self.B, *out.action_preds.shape[2:], device=states.device)
        pred[rows] = out.action_preds[:, -1]
        self._keep_attention(self._patterns(run), rows, L)
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

    def _embeds(self, history: list) -> torch.Tensor | None:
        """[B, L, H] the states' embeddings kept in the history (a conv encoder), or None."""
        return torch.stack([h[3] for h in history], 1) if self.embed else None

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
        tok_s = (self.history[-1][3] if self.embed else m.embed_state(s)) + m.embed_timestep.weight[ts]
        new, pos = [tok_r, tok_s], [3 * t, 3 * t + 1]
        if self.prev_action is not None:
            t_prev = self._timestep(t - 1)
            new.insert(0, m.embed_action(self.prev_action) + m.embed_timestep.weight[t_prev])
            pos.insert(0, 3 * (t - 1) + 2)
        x = m._finish_tokens(torch.stack(new, 1))
        q_pos = torch.tensor(pos, device=dev)
        k_pos = q_pos if self.cache_pos is None else torch.cat([self.cache_pos, q_pos])
        run = self._run()
        x, _, new_cache, _ = run_blocks(m.blocks, x, allowed_keys(q_pos, k_pos, m.band, per_step=3), self.cache, run)
        if self.record_attention:
            atts = [a[:, :, -1] for a in self._patterns(run)]   # the s_t query over keys k_pos -> (steps back, type)
            K = m.context_length
            slot = K - 1 - (t - k_pos // 3)
            seen = slot >= 0
            out = torch.zeros(self.B, len(atts), atts[0].shape[1], K, 3, device=dev)
            out[:, :, :, slot[seen], (k_pos % 3)[seen]] = torch.stack(atts, 1)[..., seen]
            self.attention = out.cpu().numpy()
        # keep the keys the next step's queries can see: steps >= t - K + 1 (all of them for HF imports)
        keep = k_pos // 3 > t - m.context_length if m.band is not None else torch.ones_like(k_pos, dtype=torch.bool)
        if not bool(keep.all()):
            first = int(torch.argmax(keep.int()))
            new_cache = [(k[:, :, first:], v[:, :, first:]) for k, v in new_cache]
            k_pos = k_pos[first:]
        self.cache, self.cache_pos = new_cache, k_pos
        return m._action_head(m.ln_final(x[:, -1]))
