"""Every shipped agent gives the outputs it gave before the model code was reorganised (issue 22: one transformer
block for DT and TT, typed configs, the DT rollout and partial forwards in their own files).

tests/data/shipped_outputs.npz holds each agent's outputs on fixed inputs, recorded with the code before that
change (`python tests/test_shipped_outputs.py` rewrites it: do that only for a deliberate change of numbers).
DT: forward (actions, returns, states, values, every attention map, the last hidden state), the value head with
the return hidden, run_with_cache(last_state_only=True), a head's output, run_suffix from block 1 against
cached keys / values, and rollouts (KV-cached with recorded attention, the recompute twin, a context-limited
one, value() and policy()). TT: forward logits and attention, named activations, KV-cached decoding, a beam
plan, an open-loop prediction, a rollout. MLP / GRU / dynamics: a forward or a rollout. memory-dt (issue 23, a
grid DT) was added to the file when it was shipped, the other agents' arrays left as they were recorded; so were the
value agents of issue 24 (keydoor-cql, masked-cartpole-drqn, cartpole-dqn: a rollout and episode_values), by
`python tests/test_shipped_outputs.py NAME ...`, which adds or replaces only the named agents' arrays.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "sample_data" / "agents"
REFERENCE = Path(__file__).resolve().parent / "data" / "shipped_outputs.npz"
NAMES = sorted(p.name for p in AGENTS.iterdir() if (p / "config.json").is_file())


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _dt_inputs(agent, B: int, L: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, :min(3, L - 1)] = 0
    if agent.discrete:
        actions = torch.nn.functional.one_hot(torch.randint(0, agent.config.n_actions, (B, L), generator=g),
                                              agent.config.n_actions).float()
    else:
        actions = torch.rand(B, L, agent.act_dim, generator=g) * 2 - 1
    t0 = torch.randint(0, max(1, agent.config.max_ep_len - L), (B, 1), generator=g)
    return {"states": torch.randn(B, L, agent.obs_dim, generator=g),
            "actions": actions,
            "returns_to_go": torch.randn(B, L, 1, generator=g),
            "timesteps": t0 + torch.arange(L)[None], "attention_mask": mask}


def _observations(agent, steps: int, B: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mean = np.asarray(agent.config.state_mean if agent.config.state_mean is not None else np.zeros(agent.obs_dim))
    std = np.asarray(agent.config.state_std if agent.config.state_std is not None else np.ones(agent.obs_dim))
    return (mean + rng.standard_normal((steps, B, agent.obs_dim)) * std).astype(np.float32)


def _roll(rollout, obs: np.ndarray, out: dict, prefix: str, extra=None) -> None:
    acts = []
    for t in range(len(obs)):
        acts.append(np.asarray(rollout.act(obs[t]), np.float64))
        rollout.observe(np.full(obs.shape[1], 0.5 + 0.1 * t))
        if extra is not None:
            extra(t)
    out[prefix + "actions"] = np.stack(acts)


def dt_outputs(agent) -> dict[str, np.ndarray]:
    out = {}
    K, n = agent.context_length, agent.n_layer
    L = min(K + 3, agent.config.max_ep_len) if agent.band is not None else K   # past K: the band masks keys
    inp = _dt_inputs(agent, 2, L, seed=1)
    with torch.no_grad():
        f = agent(**inp, output_attentions=True, output_hidden_states=True)
        for k in ("action_preds", "return_preds", "state_preds", "value_preds"):
            out[f"forward.{k}"] = _np(f[k])
        out["forward.attentions"] = _np(torch.stack(f.attentions, 1)[..., -4:, :])   # the last 4 queries' rows
        out["forward.hidden_last"] = _np(f.hidden_states[-1])
        out["forward.value_unknown"] = _np(agent(**inp, rtg_known=False).value_preds)
        last, _ = agent.run_with_cache(inp, names=[], last_state_only=True)
        out["last_state.action_preds"], out["last_state.value_preds"] = _np(last.action_preds), _np(last.value_preds)
        _, cache = agent.run_with_cache(inp, names=["blocks.*.resid_pre", f"blocks.{n - 1}.attn.head_out",
                                                    "ln_final.scale"])
        out["cache.head_out"] = _np(cache[f"blocks.{n - 1}.attn.head_out"])
        out["cache.ln_final_scale"] = _np(cache["ln_final.scale"])
        # run_suffix from block 1: the last 5 tokens up to the last s_t, earlier ones as cached keys / values
        T, s0 = 3 * L - 1, 3 * L - 6
        past = [agent.keys_values(j, cache[f"blocks.{j}.resid_pre"][:, :s0]) + (torch.arange(s0),) for j in range(1, n)]
        valid = inp["attention_mask"].bool().repeat_interleave(3, dim=1)
        suffix = agent.run_suffix(1, cache["blocks.1.resid_pre"][:, s0:T], torch.arange(s0, T), past=past, valid=valid)
        out["suffix.action_preds"], out["suffix.value_preds"] = _np(suffix.action_preds), _np(suffix.value_preds)
    steps = K + n * K + 2 if agent.band is not None else 2 * K + 2
    obs = _observations(agent, steps, 2, seed=2)
    targets = [0.8 * agent.config.rtg_scale, 0.3 * agent.config.rtg_scale]
    uniforms = np.random.default_rng(3).random((2, steps))
    r = agent.start_rollout(2, targets, seed=0, uniforms=uniforms, record_attention=True)
    values, policies = [], []

    def keep(t):
        values.append(r.value())
        policies.append(r.policy())
    _roll(r, obs, out, "rollout.cached.", keep)
    out["rollout.cached.attention"] = r.attention
    out["rollout.cached.values"], out["rollout.cached.policies"] = np.stack(values), np.stack(policies)
    _roll(agent.start_rollout(2, targets, seed=0, uniforms=uniforms, use_cache=False), obs, out, "rollout.recompute.")
    _roll(agent.start_rollout(2, targets, seed=0, uniforms=uniforms, context=[1, min(3, K)]), obs, out,
          "rollout.context.")
    _roll(agent.start_rollout(2, targets, seed=5, sample=True), obs, out, "rollout.sampled.")
    return out


def _tt_tokens(agent, B: int, T: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    dims = torch.arange(T) % agent.D
    return dims[None] * agent.N + torch.randint(0, agent.N, (B, T), generator=g)


def tt_outputs(agent) -> dict[str, np.ndarray]:
    out = {}
    T = agent.block_size
    tok = _tt_tokens(agent, 2, T, seed=1)
    with torch.no_grad():
        f = agent(tok, output_attentions=True)
        out["forward.logits"] = _np(f.logits[:, -2 * agent.D:])
        out["forward.attentions"] = _np(torch.stack(f.attentions, 1)[..., -4:, :])   # the last 4 queries' rows
        out["final_hidden"] = _np(agent.final_hidden(tok[:, :agent.D * 2]))
        _, cache = agent.run_with_cache(tok, names=["blocks.*.attn.head_out", "blocks.*.mlp.hidden", "ln_final.scale"])
        for k, v in cache.items():
            out["cache." + k] = _np(v[:, -4:])
        half = T // 2
        o = agent(tok[:, :half], use_cache=True)
        logits, past = [o.logits[:, -1]], o.past_key_values
        for i in range(half, min(half + agent.D + 3, T)):
            o = agent(tok[:, i:i + 1], past_key_values=past, use_cache=True)
            logits.append(o.logits[:, -1])
            past = o.past_key_values
        out["kv.logits"] = _np(torch.stack(logits, 1))
    D, o_dim = agent.D, agent.obs_dim
    prefix = tok[:, :3 * D + o_dim].numpy()
    plans = agent.plan_tokens(prefix, generator=torch.Generator().manual_seed(0), beam_width=4, horizon=3)
    out["plan.tokens"] = np.stack([p.tokens for p in plans])
    out["plan.scores"] = np.array([p.score for p in plans])
    acts = np.random.default_rng(4).uniform(-1, 1, (2, 3, agent.act_dim))
    pred = agent.predict_trajectory(prefix, acts)
    out["predict.observations"], out["predict.values"] = pred.observations, pred.values
    obs = _observations(agent, 3, 2, seed=2)
    _roll(agent.start_rollout(2, seed=0, beam_width=4, horizon=2), obs, out, "rollout.")
    return out


def other_outputs(agent) -> dict[str, np.ndarray]:
    out = {}
    if agent.has("acts"):
        obs = _observations(agent, 5, 2, seed=2)
        _roll(agent.start_rollout(2, seed=0), obs, out, "rollout.")
        if agent.has("q_values"):   # value agents: the values the views read, along the first env's steps
            a = out["rollout.actions"][:, 0]
            values = agent.episode_values(obs[:, 0], a.astype(np.int64 if agent.discrete else np.float32))
            out.update({f"values.{k}": v for k, v in values.items() if v is not None})
    else:
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            o = agent(torch.randn(2, agent.obs_dim, generator=g), torch.rand(2, agent.act_dim, generator=g) * 2 - 1)
        for k, v in (o.items() if isinstance(o, dict) else enumerate(o if isinstance(o, tuple) else (o,))):
            out[f"forward.{k}"] = _np(v)
    return out


def outputs(name: str) -> dict[str, np.ndarray]:
    from models import load_agent

    torch.manual_seed(0)
    agent = load_agent(AGENTS / name)
    fn = {"dt": dt_outputs, "tt": tt_outputs}.get(agent.kind, other_outputs)
    return {k: np.asarray(v) for k, v in fn(agent).items()}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """every test here at one torch thread (conftest's one_thread)"""


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("name", NAMES)
def test_shipped_agent_outputs_unchanged(name, reference):
    got = outputs(name)
    want = {k.split("/", 1)[1]: v for k, v in reference.items() if k.split("/", 1)[0] == name}
    assert want, f"no reference outputs recorded for {name}"
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=0, atol=1e-6, equal_nan=True, err_msg=f"{name}: {k}")


def record(only=None) -> None:
    """Every agent's outputs, or with `only` (names) those agents' outputs added to the file, the rest kept as read."""
    torch.set_num_threads(1)
    arrays = {}
    if only:
        with np.load(REFERENCE) as z:
            arrays = {k: z[k] for k in z.files if k.split("/", 1)[0] not in only}
    for name in only or NAMES:
        for k, v in outputs(name).items():
            arrays[f"{name}/{k}"] = v
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, **arrays)
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size:,} bytes, {len(arrays)} arrays)")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(ROOT))
    record(sys.argv[1:] or None)   # `python tests/test_shipped_outputs.py NAME ...`: only those agents re-recorded
