"""DTI's Decision Transformer (jbloomAus/DecisionTransformerInterpretability), re-implemented standalone for tests.

Written from DTI's source, with its own parameter names, so `load_state_dict` takes a DTI checkpoint's
`model_state_dict` as it is and `checkpoint()` writes files in DTI's format:
- src/models/trajectory_transformer.py: `TrajectoryTransformer.__init__` (action_embedding: a Sequential holding
  Embedding(n_actions + 1, d) — row n_actions is the pad action; time_embedding: Embedding(max_steps + 1, d) or
  Linear(1, d) when time_embedding_type == "linear"; state_embedding: Linear(prod(image shape), d, bias=False) for
  "grid"; action_predictor, state_predictor), `DecisionTransformer.__init__` (reward_embedding: a Sequential holding
  Linear(1, d, bias=False); reward_predictor; `assert (n_ctx - 2) % 3 == 0`), `get_state_embedding` (grid:
  rearrange "batch block height width channel -> (batch block) (channel height width)": the flattening is
  channel-major), `get_time_embedding` (the Embedding's output squeezed; Linear of the float timestep),
  `get_token_embeddings` (time embedding added to R, s and a; actions one step shorter than states give 3T - 1
  tokens, R s a interleaved; with no actions, the two tokens R_0 s_0), `get_logits` (a 3T - 1 stream gets x[:, -2]
  (the last s token's output) appended, then action_preds from the s tokens, reward / state preds from the a tokens),
  `initialize_easy_transformer` (a TransformerLens HookedTransformer: n_ctx token positions, act_fn =
  activation_fn, gated_mlp, normalization_type = layer_norm ("LN" or None), causal attention; its embed and unembed
  replaced by the identity, its pos_embed by `PosEmbedTokens`, W_pos [n_ctx, d] whose first T rows are added).
- TransformerLens (HookedTransformer.forward, TransformerBlock, Attention, MLP / GatedMLP, LayerNorm): resid =
  tokens + W_pos[:T]; per block resid += attn(ln1(resid)); resid += mlp(ln2(resid)); ln_final; attention q = x W_Q +
  b_Q per head, scores / sqrt(d_head), causal mask (masked scores IGNORE), softmax, z = pattern v, out = sum_h z_h W_O
  + b_O; MLP act(x W_in + b_in) W_out + b_out, gated: (act(x W_gate) * (x W_in) + b_in) W_out + b_out; LayerNorm
  (x - mean) / sqrt(var + eps) * w + b with eps 1e-5. The buffers `attn.mask` [n_ctx, n_ctx] and `attn.IGNORE` are in
  its state dict.
- src/decision_transformer/utils.py: `store_transformer_model` (torch.save of {"model_state_dict",
  "offline_config", "environment_config", "model_config"}, the configs as JSON strings of their dataclass fields;
  ConfigJsonEncoder drops observation_space / action_space to null), `initialize_padding_inputs` (the evaluation
  window: max_len = 1 + n_ctx // 3 steps, left-padded with zero observations, the pad action n_actions, the initial
  return-to-go and timestep 0, no mask passed to the model), `get_max_len_from_model_type`.
- src/decision_transformer/eval.py `evaluate_dt_agent`: forward(states [B, K, H, W, C], actions [B, K - 1, 1],
  rtgs [B, K, 1], timesteps [B, K, 1]); the action is argmax of action_preds[:, -1]; rtg_{t+1} = rtg_t - r_t (no
  scale).
"""
from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F
from torch import nn

ACT = {"relu": F.relu, "gelu": F.gelu}


class TLLayerNorm(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.w = nn.Parameter(torch.ones(d))
        self.b = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        x = x - x.mean(-1, keepdim=True)
        scale = (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt()
        return x / scale * self.w + self.b


class TLAttention(nn.Module):
    def __init__(self, d: int, h: int, n_ctx: int):
        super().__init__()
        dh = d // h
        self.W_Q, self.W_K, self.W_V = (nn.Parameter(torch.empty(h, d, dh)) for _ in range(3))
        self.W_O = nn.Parameter(torch.empty(h, dh, d))
        self.b_Q, self.b_K, self.b_V = (nn.Parameter(torch.zeros(h, dh)) for _ in range(3))
        self.b_O = nn.Parameter(torch.zeros(d))
        self.register_buffer("mask", torch.tril(torch.ones(n_ctx, n_ctx)).bool())
        self.register_buffer("IGNORE", torch.tensor(-1e5))
        self.dh = dh

    def forward(self, x):
        T = x.shape[1]
        q = torch.einsum("btd,hde->bthe", x, self.W_Q) + self.b_Q
        k = torch.einsum("btd,hde->bthe", x, self.W_K) + self.b_K
        v = torch.einsum("btd,hde->bthe", x, self.W_V) + self.b_V
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(self.dh)
        scores = torch.where(self.mask[:T, :T], scores, self.IGNORE)
        z = torch.einsum("bhqk,bkhe->bqhe", scores.softmax(-1), v)
        return torch.einsum("bqhe,hed->bqd", z, self.W_O) + self.b_O


class TLMLP(nn.Module):
    def __init__(self, d: int, d_mlp: int, act: str, gated: bool):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(d, d_mlp))
        if gated:
            self.W_gate = nn.Parameter(torch.empty(d, d_mlp))
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = nn.Parameter(torch.empty(d_mlp, d))
        self.b_out = nn.Parameter(torch.zeros(d))
        self.act, self.gated = ACT[act], gated

    def forward(self, x):
        if self.gated:
            post = self.act(x @ self.W_gate) * (x @ self.W_in) + self.b_in
        else:
            post = self.act(x @ self.W_in + self.b_in)
        return post @ self.W_out + self.b_out


class TLBlock(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d, ln = cfg["d_model"], cfg["layer_norm"]
        if ln:
            self.ln1, self.ln2 = TLLayerNorm(d), TLLayerNorm(d)
        self.attn = TLAttention(d, cfg["n_heads"], cfg["n_ctx"])
        self.mlp = TLMLP(d, cfg["d_mlp"], cfg["activation_fn"], cfg["gated_mlp"])
        self.ln = bool(ln)

    def forward(self, x):
        x = x + self.attn(self.ln1(x) if self.ln else x)
        return x + self.mlp(self.ln2(x) if self.ln else x)


class PosEmbedTokens(nn.Module):
    def __init__(self, n_ctx: int, d: int):
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(n_ctx, d))


class TLTransformer(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.pos_embed = PosEmbedTokens(cfg["n_ctx"], cfg["d_model"])
        self.blocks = nn.ModuleList(TLBlock(cfg) for _ in range(cfg["n_layers"]))
        if cfg["layer_norm"]:
            self.ln_final = TLLayerNorm(cfg["d_model"])
        self.ln = bool(cfg["layer_norm"])

    def forward(self, tokens):
        x = tokens + self.pos_embed.W_pos[:tokens.shape[1]]
        for b in self.blocks:
            x = b(x)
        return self.ln_final(x) if self.ln else x


class DTIReference(nn.Module):
    """DTI's DecisionTransformer forward (grid / one-hot state embeddings; see the module docstring)."""

    def __init__(self, model_config: dict, n_actions: int, obs_shape: tuple[int, int, int], max_steps: int):
        super().__init__()
        cfg = dict(model_config)
        assert (cfg["n_ctx"] - 2) % 3 == 0
        cfg["layer_norm"] = cfg["layer_norm"] in (True, "LN")
        d = cfg["d_model"]
        n_obs = math.prod(obs_shape)
        self.cfg, self.obs_shape, self.n_actions = cfg, tuple(obs_shape), n_actions
        self.action_embedding = nn.Sequential(nn.Embedding(n_actions + 1, d))
        self.time_embedding = (nn.Linear(1, d) if cfg["time_embedding_type"] == "linear"
                               else nn.Embedding(max_steps + 1, d))
        self.state_embedding = nn.Linear(n_obs, d, bias=False)
        self.transformer = TLTransformer(cfg)
        self.action_predictor = nn.Linear(d, n_actions)
        self.state_predictor = nn.Linear(d, n_obs)
        self.reward_embedding = nn.Sequential(nn.Linear(1, d, bias=False))
        self.reward_predictor = nn.Linear(d, 1)

    def randomize(self, seed: int) -> "DTIReference":
        """Seeded random weights every part of the forward depends on: vectors and tables std 0.3 (layer norm
        weights around 1), matrices std 0.7 / sqrt(fan-in), so activations stay O(1) with or without layer norms (and
        float32 rounding well under the tests' 1e-5)."""
        g = torch.Generator().manual_seed(seed)
        fan_in = {"W_Q": 1, "W_K": 1, "W_V": 1, "W_in": 0, "W_gate": 0, "W_out": 0}
        with torch.no_grad():
            for name, p in self.named_parameters():
                last = name.rsplit(".", 1)[-1]
                if name == "time_embedding.weight" and p.shape[1] == 1:
                    std = 0.01   # a Linear of the raw timestep (up to max_steps): kept O(1) over an episode
                elif last == "W_O":
                    std = 0.7 * (p.shape[0] * p.shape[1]) ** -0.5
                elif last in fan_in:
                    std = 0.7 * p.shape[fan_in[last]] ** -0.5
                elif last == "weight" and p.dim() == 2 and "embedding" not in name or name.startswith("state_emb"):
                    std = 0.7 * p.shape[1] ** -0.5
                else:
                    std = 0.3
                p.copy_(torch.randn(p.shape, generator=g) * std + (1.0 if last == "w" else 0.0))
        return self

    def forward(self, states, actions, rtgs, timesteps, time_on_actions: bool = True, flatten: str = "chw"):
        """states [B, T, H, W, C]; actions [B, T - 1, 1] long (or [B, T, 1], or None with T = 1); rtgs [B, T, 1];
        timesteps [B, T, 1] -> (state_preds, action_preds, reward_preds) as DTI's get_logits returns them.
        time_on_actions=False / flatten="hwc": broken variants (no time embedding on action tokens; the grid
        flattened in the observation's order), which tests use to show that each detail changes the logits."""
        B, T = states.shape[:2]
        grid = states.permute(0, 1, 4, 2, 3) if flatten == "chw" else states   # DTI: (channel height width)
        s = self.state_embedding(grid.reshape(B, T, -1).float())
        if self.cfg["time_embedding_type"] == "linear":
            t = self.time_embedding(timesteps.float())
        else:
            t = self.time_embedding(timesteps.long()).squeeze(-2)
        r = self.reward_embedding(rtgs.float()) + t
        s = s + t
        if actions is None:
            tokens = torch.stack([r[:, 0], s[:, 0]], 1)
        else:
            a = self.action_embedding(actions.long()).flatten(2)
            n = a.shape[1]
            a = a + t[:, :n] if time_on_actions else a
            tokens = torch.zeros(B, 3 * T - (T - n), r.shape[-1])
            tokens[:, ::3], tokens[:, 1::3], tokens[:, 2::3] = r, s, a
        x = self.transformer(tokens)
        if actions is None:
            return None, self.action_predictor(x[:, 1:2]), None
        if x.shape[1] % 3:
            x = torch.cat([x, x[:, -2:-1]], 1)
        x = x.reshape(B, T, 3, -1)
        return self.state_predictor(x[:, :, 2]), self.action_predictor(x[:, :, 1]), self.reward_predictor(x[:, :, 2])


def padded_window(states, actions, rtgs, timesteps, K: int, n_actions: int):
    """A short window of L <= K real steps (states [B, L, H, W, C], actions [B, L - 1] long, rtgs [B, L],
    timesteps [B, L]) as DTI's evaluation feeds it (`initialize_padding_inputs`): K steps, the first K - L pads
    with zero observations, the pad action n_actions, the initial return-to-go and timestep 0."""
    B, L = states.shape[:2]
    p = K - L
    s = torch.cat([torch.zeros(B, p, *states.shape[2:]), states.float()], 1)
    a = torch.cat([torch.full((B, p), n_actions, dtype=torch.long), actions.long()], 1)[..., None]
    r = torch.cat([rtgs[:, :1].expand(B, p), rtgs], 1)[..., None].float()
    t = torch.cat([torch.zeros(B, p, dtype=torch.long), timesteps.long()], 1)[..., None]
    return s, a, r, t


def environment_config(env_id: str, max_steps: int, one_hot: bool, view_size: int = 7) -> dict:
    """EnvironmentConfig's fields as DTI's ConfigJsonEncoder writes them (spaces dropped to null)."""
    return {"env_id": env_id, "one_hot_obs": one_hot, "img_obs": False, "fully_observed": False,
            "max_steps": max_steps, "seed": 1, "view_size": view_size, "capture_video": False, "video_dir": "videos",
            "video_frequency": 50, "render_mode": "rgb_array", "action_space": None, "observation_space": None,
            "device": "cpu"}


def model_config(**kw) -> dict:
    cfg = {"d_model": 16, "n_heads": 2, "d_mlp": 24, "n_layers": 2, "n_ctx": 8, "layer_norm": "LN",
           "state_embedding_type": "grid", "time_embedding_type": "embedding", "seed": 1, "device": "cpu",
           "activation_fn": "relu", "gated_mlp": False}
    cfg.update(kw)
    return cfg


def checkpoint(path, ref: DTIReference, env_config: dict, model_cfg: dict, state_dict=None) -> None:
    """A file as DTI's store_transformer_model writes it."""
    offline = {"trajectory_path": "trajectories/memory.pkl", "batch_size": 128, "lr": 0.0001}
    torch.save({"model_state_dict": ref.state_dict() if state_dict is None else state_dict,
                "offline_config": json.dumps(offline), "environment_config": json.dumps(env_config),
                "model_config": json.dumps(model_cfg)}, path)
