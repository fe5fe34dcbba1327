"""`cli.py convert-agent` as a library call: a CORL dt.py checkpoint directory, an HF DecisionTransformerModel
directory or a DTI checkpoint file (models/dti_import.py) -> a seqlens checkpoint (config.json + model.safetensors),
checked before anything is written.
Every refusal is an AgentError of one sentence (the CLI prints it; bench/hostile_checkpoints.py measures it)."""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import AgentError

# A converted agent's model.safetensors may be at most this many times the weight file(s) it came from, plus a
# small constant: float32 copies of float16 / bfloat16 weights double, CORL's zero return / state / value heads
# add about one state embedding. Checked before anything is written.
CONVERT_SIZE_FACTOR = 4
CONVERT_SIZE_SLACK = 1 << 20
FILE_FORMATS = ("dti", "dt-atari")   # sources that are one .pt file, not a directory
# the DT paper's Atari model keeps an untrained 28,224 x H state head (the DT's, zero) its file lacks: its bound
# allows for it
ATARI_SLACK = 64 << 20


def convert_agent(source, out, source_format: str | None = None, context: int | None = None,
                  rtg_scale: float | None = None, force: bool = False, n_head: int | None = None,
                  env: str | None = None) -> dict:
    """A CORL dt.py checkpoint directory (config.yaml + dt_checkpoint.pt) or an HF DecisionTransformerModel
    directory (config.json + pytorch_model.bin) -> a seqlens checkpoint (config.json + model.safetensors).
    The pickles are read without torch.load (models/pt_reader.py, models/pickle_scan.py); everything is checked
    before OUT is written, the output's size is bounded by the source's, and the checkpoint is written to a
    temporary folder beside OUT, loaded back, and only then moved into OUT (nothing is left on a refusal)."""
    src, out = Path(source), Path(out)
    if source_format in FILE_FORMATS or (source_format is None and src.is_file()):
        return _convert_file(src, out, source_format, context, rtg_scale, force, n_head, env)
    if n_head is not None or env is not None:
        raise AgentError("--n-head and --env apply to checkpoint files (--from dt-atari / dti) only.")
    if not src.is_dir():
        raise AgentError(f"{src} is not a directory (expected CORL's checkpoints_path or an HF save_pretrained directory).")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise AgentError(f"{out} already exists and is not empty; pass --force to overwrite it.")
    if out.exists() and not out.is_dir():
        raise AgentError(f"{out} exists and is not a directory.")
    if out.resolve() == src.resolve():
        raise AgentError("--out must be a new directory, not the source directory (its config.json would be overwritten).")
    from .corl_import import CHECKPOINT_FILE, CONFIG_FILE, is_corl_dir

    source = source_format
    if source is None:
        if is_corl_dir(src):
            source = "corl"
        elif (src / "config.json").is_file() and ((src / "pytorch_model.bin").is_file() or (src / "model.safetensors").is_file()):
            source = "hf"
        else:
            raise AgentError(f"cannot tell what {src} holds: expected {CONFIG_FILE} + {CHECKPOINT_FILE} (CORL) or config.json + "
                             "pytorch_model.bin (Hugging Face); pass --from corl or --from hf.")
    notes = []
    if source == "corl":
        if context is not None or rtg_scale is not None:
            raise AgentError("--context and --rtg-scale apply to --from hf only; CORL's config.yaml gives seq_len and reward_scale.")
        from .corl_import import load_corl_decision_transformer

        agent, notes = load_corl_decision_transformer(src, name=src.name)
        weight_files = [src / CHECKPOINT_FILE]
    else:
        from .hf_import import _weight_files, hf_decision_transformer_from_state, load_hf_decision_transformer

        options = {k: v for k, v in (("context_length", context), ("rtg_scale", rtg_scale)) if v is not None}
        if (src / "pytorch_model.bin").is_file() and not (src / "model.safetensors").is_file():
            from .pt_reader import read_state_dict

            tensors = read_state_dict(src / "pytorch_model.bin", f"{src.name}: pytorch_model.bin")
            agent = hf_decision_transformer_from_state(src, tensors, name=src.name, **options)
            weight_files = [src / "pytorch_model.bin"]
        else:
            agent = load_hf_decision_transformer(src, name=src.name, **options)
            weight_files = _weight_files(src, src.name)
        notes.append("A Hugging Face model carries no state statistics: pass --normalize-from DATA to evaluate/export "
                     "(the dataset it was trained on), or its observations are used raw.")
    source_bytes = sum(f.stat().st_size for f in weight_files)
    out_bytes = sum(v.numel() * v.element_size() for v in agent.state_dict().values())
    if out_bytes > CONVERT_SIZE_FACTOR * source_bytes + CONVERT_SIZE_SLACK:
        raise AgentError(f"{src}: the converted agent would hold {out_bytes:,} bytes of weights from {source_bytes:,} bytes of "
                         f"{', '.join(f.name for f in weight_files)[:80]}, more than {CONVERT_SIZE_FACTOR}x + 1 MiB; refusing to "
                         "write it (a real conversion stays within that).")
    back = write_converted(agent, out)
    notes += [n for n in back.notes if n not in notes]
    c = back.config
    return {"source": str(src), "from": source, "out": str(out), "kind": c.kind, "obs_dim": c.obs_dim,
              "act_dim": c.act_dim, "context_length": c.context_length, "max_ep_len": c.max_ep_len,
              "rtg_scale": c.rtg_scale, "env_id": c.env_id, "n_params": back.n_params, "notes": notes}


def _check_out(src: Path, out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise AgentError(f"{out} exists and is not a directory.")
    if out.exists() and any(out.iterdir()) and not force:
        raise AgentError(f"{out} already exists and is not empty; pass --force to overwrite it.")
    if out.resolve() == src.resolve() or out.resolve() in src.resolve().parents:
        raise AgentError("--out must be a new directory, not the source or a folder holding it.")


def _looks_like_atari(obj) -> bool:
    return isinstance(obj, dict) and any(k in obj for k in ("global_pos_emb", "module.global_pos_emb"))


def _convert_file(src: Path, out: Path, source_format: str | None, context, rtg_scale, force: bool,
                  n_head: int | None, env: str | None) -> dict:
    """A checkpoint file: DTI's torch.save dict (models/dti_import.py) or the DT paper's Atari state dict
    (models/dt_atari_import.py, models/dt_atari_agent.py), named by --from or recognised by its keys."""
    from .dti_import import CONFIG_KEYS, fitting_env_id, load_dti_decision_transformer, looks_like_dti
    from .pt_reader import read_pt

    if not src.is_file():
        raise AgentError(f"{src} is not a file (DTI's and the DT paper's Atari checkpoints are one .pt file).")
    if context is not None or rtg_scale is not None:
        raise AgentError("--context and --rtg-scale apply to --from hf only; a checkpoint file's tensors give the "
                         "context, and neither DTI nor the DT paper's Atari model scales returns-to-go.")
    _check_out(src, out, force)
    obj = read_pt(src, src.name)
    fmt = source_format or ("dti" if looks_like_dti(obj) else "dt-atari" if _looks_like_atari(obj) else None)
    if fmt is None:
        raise AgentError(f"cannot tell what {src.name} holds: a file converts as a DTI checkpoint (a dict of "
                         f"{', '.join(CONFIG_KEYS)}) or the DT paper's Atari state dict (global_pos_emb, "
                         "state_encoder, ...); CORL and Hugging Face models are directories (--from corl / hf).")
    slack = CONVERT_SIZE_SLACK
    if fmt == "dti":
        if n_head is not None:
            raise AgentError("--n-head applies to --from dt-atari only; a DTI checkpoint's model_config gives n_heads.")
        agent, notes = load_dti_decision_transformer(src, name=src.name, obj=obj, env=env)
    else:
        from .dt_atari_agent import FRAMES, atari_agent

        try:
            from .dt_atari_import import PAPER_SIZES, parse_state_dict
        except ImportError:   # the parser comes with the environments' work (issue 23, item 3)
            raise AgentError(f"{src.name} is the DT paper's Atari model, but this seqlens has no reader for it "
                             "(models/dt_atari_import.py).") from None

        if n_head is None:
            raise AgentError(f"{src.name} is the DT paper's Atari model, whose tensors do not say its number of heads: "
                             f"pass --n-head (the paper used {PAPER_SIZES['n_head']}).")
        if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                for k, v in obj.items()):
            raise AgentError(f"{src.name} is not a state dict of named tensors (what model_atari.py's GPT saves).")
        tensors, cfg, notes = parse_state_dict(obj, n_head, src.name)
        agent = atari_agent(tensors, cfg, src.name, src.name)
        notes = list(notes) + ["The DT paper's Atari model has no value, return or state head: those predictions are "
                               "untrained (zero)."]
        if env is not None:
            agent.config.env_id, more = fitting_env_id(env, FRAMES, cfg["vocab_size"], src.name)
            notes += more
        slack = ATARI_SLACK
    source_bytes = src.stat().st_size
    out_bytes = sum(v.numel() * v.element_size() for v in agent.state_dict().values())
    if out_bytes > CONVERT_SIZE_FACTOR * source_bytes + slack:
        raise AgentError(f"{src.name}: the converted agent would hold {out_bytes:,} bytes of weights from {source_bytes:,} "
                         f"bytes, more than {CONVERT_SIZE_FACTOR}x + 1 MiB; refusing to write it.")
    back = write_converted(agent, out)
    notes += [n for n in back.notes if n not in notes]
    c = back.config
    return {"source": str(src), "from": fmt, "out": str(out), "kind": c.kind, "obs_dim": c.obs_dim,
            "obs_shape": c.hparams.get("obs_shape"), "act_dim": c.act_dim, "n_actions": c.n_actions,
            "context_length": c.context_length, "max_ep_len": c.max_ep_len, "rtg_scale": c.rtg_scale,
            "env_id": c.env_id, "n_params": back.n_params, "notes": notes}


def write_converted(agent, out: Path):
    """save_agent into a temporary folder beside OUT, load it back (what a user will load: it must pass every
    check), then move its files into OUT. On any failure the temporary folder goes, and so do OUT and the parent
    folders this call created; files already in OUT (--force) are replaced only on success."""
    import os
    import shutil
    import tempfile

    from models import load_agent, save_agent   # through the package: what a test may replace

    made = []   # folders this call creates, outermost first
    for folder in reversed([out, *out.parents]):
        if not folder.exists():
            made.append(folder)
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.converting-", dir=out.parent))
        save_agent(agent, tmp)
        back = load_agent(tmp, display_name=str(out))
        if not out.exists():
            os.replace(tmp, out)
        else:
            for f in tmp.iterdir():
                os.replace(f, out / f.name)
            tmp.rmdir()
        tmp = None
        return back
    except BaseException as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(made):
            if folder == out:
                shutil.rmtree(folder, ignore_errors=True)   # only this call wrote into it
            else:
                try:
                    folder.rmdir()
                except OSError:
                    pass
        if isinstance(e, OSError) and not isinstance(e, AgentError):
            raise AgentError(f"cannot write {out}: {e.strerror or type(e).__name__}.") from None
        raise
