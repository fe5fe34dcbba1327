"""Spatial credit: a pixel-saliency map over a 30-step window of a DT-paper-sized Atari agent (6 layers, 8 heads, 128
dims, the paper's conv encoder over 4x84x84 frame stacks, K=30, random weights), every step's frames at once.

Ours: analysis.interp.spatial_credit.spatial_attribute, one forward and one backward for the whole window (captum's
Saliency). Naive twin: spatial_credit.saliency_per_step, one forward and one backward per step, only that step's frames
asking for a gradient. Every map must agree within 1e-5 absolute, and within 1e-4 of each step's own largest value
(the past steps' maps are small beside the current one's: an absolute tolerance alone would pass them unread).
"""
from __future__ import annotations

import numpy as np

from bench.harness import one_thread, row, timed

K, N_ACTIONS = 30, 4


def _agent_and_inputs(seed: int = 0):
    import torch

    from models.base import AgentConfig
    from models.decision_transformer import DecisionTransformer

    torch.manual_seed(seed)
    dim = 4 * 84 * 84
    config = AgentConfig(kind="dt", obs_dim=dim, act_dim=1, discrete=True, n_actions=N_ACTIONS, context_length=K,
                         max_ep_len=1000, state_mean=[0.0] * dim, state_std=[255.0] * dim,
                         hparams={"hidden": 128, "n_layer": 6, "n_head": 8, "obs_shape": [4, 84, 84],
                                  "state_encoder": "atari_conv"})
    agent = DecisionTransformer(config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    frames = torch.randint(0, 256, (1, K, 4, 84, 84), generator=g).float() / 255
    actions = torch.randint(0, N_ACTIONS, (1, K), generator=g)
    inputs = {"states": frames, "actions": torch.nn.functional.one_hot(actions, N_ACTIONS).float(),
              "returns_to_go": torch.full((1, K, 1), 5.0), "timesteps": (100 + torch.arange(K))[None],
              "attention_mask": torch.ones(1, K, dtype=torch.long)}
    return agent, inputs, actions[:, -1]


def _bench(quick: bool) -> dict:
    from analysis.interp.spatial_credit import saliency_per_step, spatial_attribute

    agent, inputs, index = _agent_and_inputs()
    shape, layout = (4, 84, 84), "frames"
    with one_thread():
        spatial_attribute(agent, inputs, index, shape, layout)          # warm-up
        ours_s, ours = timed(lambda: spatial_attribute(agent, inputs, index, shape, layout)["maps"],
                             repeat=1 if quick else 3)
        naive_s, naive = timed(lambda: saliency_per_step(agent, inputs, index, shape, layout))
    diff = np.abs(ours - naive)
    per_step = ours.reshape(K, -1).max(1)
    rel = float((diff.reshape(K, -1).max(1) / np.maximum(per_step, 1e-30)).max())
    same = float(diff.max()) <= 1e-5 and rel <= 1e-4
    return row(naive_s, ours_s, same, digits=4, window_steps=K, map_shape=list(ours.shape[1:]), backwards=1,
               naive_backwards=K, max_abs_diff=float(diff.max()), max_rel_diff_per_step=rel,
               current_over_oldest=float(per_step[-1] / max(per_step[0], 1e-30)))


BENCHMARKS = {"spatial_saliency_window": _bench}
