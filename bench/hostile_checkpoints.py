"""Hostile checkpoints for `cli.py convert-agent` (CORL `dt_checkpoint.pt` + config.yaml, HF pytorch_model.bin),
written by hand: pickles that allocate through torch's weights-only allow-list, tensors that lie about their
layout, configs that are huge or hold absurd numbers.

`hostile_checkpoint_files(directory)` writes each as a source directory and returns one dict per case:
{"name", "path", "expect", "secret", "kind": "convert"}; `expect` is a lower-case fragment of the one sentence
`convert-agent` refuses it with. `convert_refusal(path)` converts a directory into a temporary OUT and returns
that sentence ('' if it was converted). Every file is small (the largest, the 30 MB padded config.yaml, is
text; every .pt is under 20 MB) and all are written in a few seconds.
"""
from __future__ import annotations

import contextlib
import io
import json
import tempfile
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

# a tiny CORL DT: state_dim, action_dim, embedding_dim, num_layers, num_heads, seq_len, episode_len
_S, _A, _H, _L, _NH, _K, _E = 3, 2, 8, 1, 2, 2, 10


def corl_config(**over) -> dict:
    """config.yaml as pyrallis dumps CORL's TrainConfig (the fields the import reads and a few more)."""
    cfg = {"project": "CORL", "group": "DT-D4RL", "name": "DT-hostile", "embedding_dim": _H, "num_layers": _L,
           "num_heads": _NH, "seq_len": _K, "episode_len": _E, "attention_dropout": 0.1, "residual_dropout": 0.1,
           "embedding_dropout": 0.1, "max_action": 1.0, "env_name": "my-own-task", "learning_rate": 0.0001,
           "batch_size": 64, "update_steps": 100000, "reward_scale": 0.001, "target_returns": [3600.0, 1800.0],
           "train_seed": 10}
    cfg.update(over)
    return cfg


def corl_state(cfg: dict | None = None, seed: int = 0, skip: tuple = ()) -> "OrderedDict[str, object]":
    """A CORL DecisionTransformer state dict for `cfg` (random float32 weights, CORL's causal masks); the keys in
    `skip` are left out (the caller puts its own tensor there without this allocating the real one)."""
    import torch

    from models.corl_import import expected_shapes

    cfg = cfg or corl_config()
    g = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for key, shape in expected_shapes(cfg, _S, _A).items():
        if key in skip:
            out[key] = None
        elif key.endswith("causal_mask"):
            out[key] = ~torch.tril(torch.ones(shape, dtype=torch.bool))
        else:
            out[key] = torch.randn(shape, generator=g) * 0.3
    return out


def corl_stats() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.normal(size=(1, _S)).astype(np.float32),
            (rng.uniform(0.5, 2.0, size=(1, _S)) + 1e-6).astype(np.float32))


def write_corl(path: Path, checkpoint: dict | None = None, cfg: dict | None = None, config_text: str | None = None) -> Path:
    """A CORL checkpoints_path: config.yaml + dt_checkpoint.pt (torch.save, as dt.py saves it)."""
    import torch
    import yaml

    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(config_text if config_text is not None else yaml.dump(cfg or corl_config()))
    if checkpoint is None:
        mean, std = corl_stats()
        checkpoint = {"model_state": corl_state(), "state_mean": mean, "state_std": std}   # configs that lie keep real weights
    torch.save(checkpoint, path / "dt_checkpoint.pt")
    return path


def write_hf(path: Path, extra: dict | None = None) -> Path:
    """An HF DecisionTransformerModel directory: config.json + pytorch_model.bin (torch.save of the state dict)."""
    import torch

    from bench.hostile_agents import _hf_config, _hf_tensors

    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(_hf_config()))
    state = OrderedDict((k, torch.from_numpy(v)) for k, v in _hf_tensors().items())
    state.update(extra or {})
    torch.save(state, path / "pytorch_model.bin")
    return path


class Reduce:
    """An object torch.save pickles as `fn(*args)` (then BUILD with `state`, if given): how a hostile file names a
    global and its arguments without running it while it is written."""

    def __init__(self, fn, args: tuple, state=None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def rewrite_pickle(pt: Path, edit) -> None:
    """Replace data.pkl inside a torch.save zip by edit(data.pkl bytes), keeping every other member (stored)."""
    with zipfile.ZipFile(pt) as zf:
        members = [(m.filename, zf.read(m)) for m in zf.infolist()]
    with zipfile.ZipFile(pt, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members:
            zf.writestr(name, edit(data) if name.endswith("/data.pkl") else data)


def _reconstruct():
    core = getattr(np, "_core", None) or np.core
    return core.multiarray._reconstruct


# ---- the cases ------------------------------------------------------------------------------------------------
def hostile_checkpoint_files(directory) -> list[dict]:
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    mean, std = corl_stats()
    cases = []

    def corl(name: str, expect: str, checkpoint=None, cfg=None, config_text=None, edit=None, secret=None):
        path = write_corl(directory / name, checkpoint, cfg, config_text)
        if edit is not None:
            rewrite_pickle(path / "dt_checkpoint.pt", edit)
        cases.append({"name": name, "path": path, "expect": expect, "secret": secret, "kind": "convert"})

    def ckpt(**over):
        out = {"model_state": corl_state(), "state_mean": mean, "state_std": std}
        out.update(over)
        return out

    def with_state(**tensors):
        state = corl_state()
        state.update(tensors)
        return ckpt(model_state=state)

    # allocations through torch's weights-only allow-list
    corl("corl-bytearray-3gib", "the global builtins.bytearray", ckpt(extra=Reduce(bytearray, (3 << 30,))))
    hf = write_hf(directory / "hf-bytearray-3gib", {"extra": Reduce(bytearray, (3 << 30,))})
    cases.append({"name": "hf-bytearray-3gib", "path": hf, "expect": "the global builtins.bytearray", "secret": None,
                  "kind": "convert"})
    corl("corl-object-array-2e28", "numpy array of dtype object",
         ckpt(extra=Reduce(_reconstruct(), (np.ndarray, (0,), b"b"), (1, (1 << 28,), np.dtype("O"), False, [None]))))
    corl("corl-object-array-3", "numpy array of dtype object", ckpt(extra=np.array([1, "two", 3.0], dtype=object)))
    # layouts that lie: one stored value declared 8 million times, shared bytes
    big = corl_config(embedding_dim=32, num_heads=4, seq_len=5, episode_len=8_000_000)
    state = corl_state(big, skip=("timestep_emb.weight",))
    state["timestep_emb.weight"] = torch.tensor([0.01]).expand(8_000_005, 32)
    corl("corl-stride0-timestep-table", "strides (0, 0)", ckpt(model_state=state), cfg=big)
    base = torch.randn(2 * _H)
    corl("corl-overlapping-views", "share values of storage",
         with_state(**{"emb_norm.weight": base[:_H], "emb_norm.bias": base[_H // 2:_H // 2 + _H]}))
    # tensors torch would build and our checks would crash on (tracebacks today)
    corl("corl-meta-state-mean", "_rebuild_meta_tensor_no_storage", ckpt(state_mean=torch.empty((1, _S), device="meta")))
    corl("corl-meta-weight", "_rebuild_meta_tensor_no_storage", with_state(**{"state_emb.weight": torch.empty((_H, _S), device="meta")}))
    corl("corl-sparse-weight", "_rebuild_sparse_tensor", with_state(**{"state_emb.weight": torch.randn(_H, _S).to_sparse()}))
    shadow = torch.from_numpy(mean.copy())
    shadow.detach = "shadowed"
    corl("corl-shadowed-detach", "_rebuild_from_type_v2", ckpt(state_mean=shadow))
    # pickles that would make the C unpickler allocate, or are simply too big
    corl("corl-memo-index-4e9", "memo index", edit=lambda d: d.replace(b"}q\x00", b"}r\xff\xff\xff\xff", 1))
    corl("corl-pickle-17mib", "pickle (data.pkl)", ckpt(extra="x" * (17 << 20)))
    # config.yaml
    import yaml

    padded = yaml.dump(corl_config()) + "padding:\n" + "- 0\n" * 7_500_000
    corl("corl-config-30mb", "refused without parsing", config_text=padded)
    corl("corl-max-action-1e308", "field 'max_action' must be in (0, 1e+06]", cfg=corl_config(max_action=1e308))
    corl("corl-reward-scale-1e300", "field 'reward_scale' must be between", cfg=corl_config(reward_scale=1e300))
    corl("corl-reward-scale-1e-300", "field 'reward_scale' must be between", cfg=corl_config(reward_scale=1e-300))
    corl("corl-episode-len-1e9", "field 'episode_len' must be at most", cfg=corl_config(episode_len=10 ** 9))
    return cases


def convert_refusal(path) -> str:
    """The sentence `cli.py convert-agent PATH --out TMP` refuses PATH with ('' if it converted it): the library call
    the command makes (models/convert.py), whose one-sentence error the command prints after "error: "."""
    from models.convert import convert_agent
    from models.errors import AgentError
    from trajectories.errors import DatasetError

    with tempfile.TemporaryDirectory() as tmp:
        try:
            with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                convert_agent(str(path), Path(tmp) / "out")
        except (AgentError, DatasetError) as e:
            return str(e)
        return ""
