"""Checkpoints: a directory with config.json + model.safetensors (or a .zip of one). Never pickle.

Also reads a Hugging Face `DecisionTransformerModel.save_pretrained` directory (see hf_import.py).
"""
from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from trajectories.limits import ENV, human_bytes, limits
from trajectories.safe_zip import open_checked

from .base import Agent, AgentConfig
from .config_check import check_agent_config
from .errors import PICKLE_SUFFIXES, AgentError
from .loading import agent_class, build_meta, read_json, shard_names, short
from .safetensors_header import read_header

FORMAT = "seqlens-agent"


def build_agent(config: AgentConfig) -> Agent:
    return agent_class(config.kind)(config)


def save_agent(agent: Agent, directory) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in agent.state_dict().items()}
    save_file(state, directory / "model.safetensors", metadata={"format": FORMAT, "kind": agent.kind})
    (directory / "config.json").write_text(json.dumps({"format": FORMAT, **agent.config.to_dict()}, indent=2) + "\n")
    return directory


def load_agent(path, context_length: int | None = None, rtg_scale: float | None = None,
               display_name: str | None = None) -> Agent:
    """A seqlens checkpoint directory, a .zip of one, or a Hugging Face Decision Transformer directory.

    context_length / rtg_scale apply to Hugging Face imports, whose config lacks them (defaults in
    hf_import.py). Every failure is an AgentError with one sentence. The files may come from strangers:
    config.json is checked field by field and the safetensors header against it (models/config_check.py,
    models/safetensors_header.py), the model is built on the meta device and its size checked, and only
    then built for real and loaded. `agent.notes` lists one-sentence remarks the UI can show (an
    environment that cannot be made here, zip members that were ignored).
    """
    path = Path(path)
    name = display_name or path.name
    if not path.exists():
        raise AgentError(f"{name} does not exist.")
    if path.suffix.lower() in PICKLE_SUFFIXES and path.is_file():
        raise AgentError(f"{name} is a pickle-based checkpoint ({path.suffix}); seqlens never unpickles files, "
                         "which can run code: save the agent as config.json + model.safetensors instead.")
    if path.is_file() and path.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory() as tmp:
            folder, notes = _extract_zip(path, Path(tmp), name)
            agent = load_agent(folder, context_length, rtg_scale, display_name=name)
            agent.notes = notes + agent.notes
            return agent
    if not path.is_dir():
        raise AgentError(f"{name} is not an agent: expected a directory with config.json and model.safetensors, or a .zip of one.")
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise AgentError(f"{name} has no config.json (an agent directory holds config.json and model.safetensors).")
    raw = read_json(cfg_path, f"{name}: config.json")
    if not isinstance(raw, dict):
        raise AgentError(f"{name}: config.json must hold a JSON object.")
    weights = path / "model.safetensors"
    if raw.get("model_type") == "decision_transformer":
        from .hf_import import load_hf_decision_transformer

        try:
            agent = load_hf_decision_transformer(path, name=name, **{k: v for k, v in (("context_length", context_length), ("rtg_scale", rtg_scale)) if v is not None})
        except AgentError:
            raise
        except (ValueError, KeyError, SafetensorError, OSError) as e:
            raise AgentError(f"{name}: {e}") from None
        agent.notes = []
        return agent
    if not weights.is_file():
        pickles = _pickles_in(path, name)
        hint = f" (found {', '.join(pickles)}, a pickle format seqlens refuses to load)" if pickles else ""
        raise AgentError(f"{name} has no model.safetensors{hint}.")
    if raw.pop("format", None) != FORMAT:
        raise AgentError(f"{name}: config.json is neither a seqlens agent (\"format\": \"{FORMAT}\") nor a Hugging Face Decision Transformer (\"model_type\": \"decision_transformer\").")
    # (a) the config's types and ranges, (b) the weights' header, (c) a meta-device model against both
    check_agent_config(raw, f"{name}: config.json")
    try:
        config = AgentConfig.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise AgentError(f"{name}: config.json does not describe an agent ({e}).") from None
    header = read_header(weights, f"{name}: model.safetensors")
    meta = build_meta(config, name)
    _check_state(meta, header, name)
    env_notes = check_env(config, name)
    # (d) only now: allocate, read, load
    try:
        agent = build_agent(config)
    except AgentError:
        raise
    except Exception as e:  # noqa: BLE001 - a stranger's config: any failure is one sentence
        raise AgentError(f"{name}: config.json cannot build a '{config.kind}' model ({short(e)}).") from None
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise AgentError(f"{name}: model.safetensors is not a readable safetensors file ({short(e)}).") from None
    _check_state(agent, state, name)
    try:
        agent.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as e:
        raise AgentError(f"{name}: model.safetensors cannot be loaded into a '{config.kind}' model ({short(e)}).") from None
    agent.eval()
    agent.notes = env_notes
    return agent


def _pickles_in(path: Path, name: str) -> list[str]:
    """Pickle-suffixed names at the top of an agent folder, for the hint: listed by trajectories/walk.py (bounded,
    nothing entered or followed); none when the folder is past the walk's limits."""
    from trajectories.walk import walk

    try:
        entries = walk(path, name, descend=lambda rel: False, error=AgentError)
    except AgentError:
        return []
    return [e.name for e in entries if e.kind in ("file", "link") and Path(e.name).suffix.lower() in PICKLE_SUFFIXES][:10]


def check_env(config: AgentConfig, name: str) -> list[str]:
    """Refuses an env_id seqlens will not make, or one whose spaces do not fit the agent; returns notes.

    An env that is registered but cannot be made here (say MuJoCo without mujoco) does not block loading
    for offline analysis: the agent loads with a note saying so.
    """
    env_id = config.env_id
    if env_id is None:
        return []
    import envs

    try:
        obs_space, act_space = envs.env_spaces(env_id)
    except envs.EnvIdError as e:
        raise AgentError(f"{name}: config.json's env_id is refused: {str(e)[0].lower()}{str(e)[1:]}") from None
    except Exception as e:  # noqa: BLE001 - registered, but not makeable here
        return [f"The environment {env_id} is not available here ({short(e)}), so the agent can be analysed offline but not evaluated."]
    from gymnasium import spaces

    shown = f"{name}: config.json's env_id {env_id}"
    hp_shape = config.hparams.get("obs_shape") if isinstance(config.hparams, dict) else None
    if isinstance(obs_space, spaces.Dict) and "image" in obs_space.spaces and hp_shape:
        # MiniGrid: the agent acts on the image through DTI's wrappers (models/rollout.make_agent_env), which set the
        # view's size and one-hot bits from the agent's shape; the env's own image must be a coded grid
        image, shape = obs_space["image"], tuple(hp_shape)
        if not (len(image.shape) == 3 and image.shape[2] == 3 and len(shape) == 3 and shape[0] == shape[1]
                and shape[2] in (3, 20)):
            raise AgentError(f"{shown} gives a MiniGrid view of shape {tuple(image.shape)} but the agent expects "
                             f"{shape}.")
    elif not isinstance(obs_space, spaces.Box) or tuple(obs_space.shape) not in (
            (config.obs_dim,), tuple(hp_shape or ())):
        got = f"shape {tuple(obs_space.shape)}" if isinstance(obs_space, spaces.Box) else f"a {type(obs_space).__name__} space"
        want = tuple(hp_shape) if hp_shape else (config.obs_dim,)
        raise AgentError(f"{shown} gives observations of {got} but the agent expects shape {want}.")
    if config.discrete:
        if not isinstance(act_space, spaces.Discrete) or int(act_space.n) != config.n_actions:
            got = f"Discrete({int(act_space.n)})" if isinstance(act_space, spaces.Discrete) else f"a {type(act_space).__name__} space"
            raise AgentError(f"{shown} has actions {got} but the agent chooses among {config.n_actions} discrete actions.")
    elif not isinstance(act_space, spaces.Box) or tuple(act_space.shape) != (config.act_dim,):
        got = f"Box of shape {tuple(act_space.shape)}" if isinstance(act_space, spaces.Box) else f"a {type(act_space).__name__} space"
        raise AgentError(f"{shown} has actions {got} but the agent acts with {config.act_dim}-d continuous actions.")
    return []


def _check_state(agent: Agent, state: dict, name: str) -> None:
    """state: tensors, or safetensors_header.TensorInfo (anything with .shape) by name."""
    expected = agent.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise AgentError(f"{name}: model.safetensors is missing {', '.join(missing[:3])}{more} for a '{agent.kind}' model with this config.")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        shown = ", ".join(k if len(k) <= 60 else k[:57] + "..." for k in unexpected[:3])
        raise AgentError(f"{name}: model.safetensors has tensors this '{agent.kind}' config does not use ({shown}); the config and weights disagree.")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise AgentError(f"{name}: {key} has shape {tuple(state[key].shape)} in model.safetensors but the config implies {tuple(tensor.shape)}; the config and weights disagree.")


AGENT_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json")


def _extract_zip(path: Path, dest: Path, name: str) -> tuple[Path, list[str]]:
    """Extract only what an agent needs (config.json, model.safetensors, or an HF index and the shards it
    names) from the zip's agent folder; never extractall. Returns (folder, notes on ignored members)."""
    cap_entries = limits().zip_entries
    declared = _declared_zip_entries(path)
    if declared is not None and declared > cap_entries:
        raise AgentError(f"{name} has {declared} zip entries, over the limit of {cap_entries} (zip_entries, set by {ENV['zip_entries']}).")
    zf, members = open_checked(path, name, float("inf"), AgentError)   # paths checked; sizes below, per member
    with zf:
        if len(members) > cap_entries:
            raise AgentError(f"{name} has {len(members)} zip entries, over the limit of {cap_entries} (zip_entries, set by {ENV['zip_entries']}).")
        configs = sorted((m.filename for m in members if PurePosixPath(m.filename).name == "config.json"), key=len)
        if not configs:
            raise AgentError(f"{name} holds no config.json (expected a zipped agent directory).")
        root = PurePosixPath(configs[0]).parent
        by_name: dict[str, zipfile.ZipInfo] = {}
        for m in members:
            if m.filename in by_name and PurePosixPath(m.filename).parent == root and PurePosixPath(m.filename).name in AGENT_FILES:
                raise AgentError(f"{name} holds two members named {m.filename}; refusing an ambiguous agent.")
            by_name.setdefault(m.filename, m)

        def member(file: str) -> zipfile.ZipInfo | None:
            return by_name.get(str(root / file) if str(root) != "." else file)

        wanted = [member("config.json")]
        if member("model.safetensors") is not None:
            wanted.append(member("model.safetensors"))
        elif member("model.safetensors.index.json") is not None:
            index = member("model.safetensors.index.json")
            wanted.append(index)
            for shard in _index_shards(zf, index, name):
                if member(shard) is None:
                    raise AgentError(f"{name}: model.safetensors.index.json names the shard {shard}, which the zip does not hold.")
                wanted.append(member(shard))
        else:
            pickles = sorted(PurePosixPath(m.filename).name for m in members
                             if PurePosixPath(m.filename).parent == root and PurePosixPath(m.filename).suffix.lower() in PICKLE_SUFFIXES)
            hint = f" (found {', '.join(pickles[:3])}, a pickle format seqlens refuses to load)" if pickles else ""
            raise AgentError(f"{name} has no model.safetensors{hint}.")
        total, cap = sum(m.file_size for m in wanted), limits().decode_bytes
        if total > cap:
            raise AgentError(f"{name}: its agent files would unpack to {human_bytes(total)}, over the limit of "
                             f"{human_bytes(cap)} (decode_bytes, set by {ENV['decode_bytes']}).")
        try:
            for m in wanted:
                zf.extract(m, dest)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError, ValueError) as e:
            raise AgentError(f"{name} is a damaged zip file ({short(e)}).") from None
    keep = {m.filename for m in wanted}
    ignored = [m.filename for m in members if m.filename not in keep and not m.is_dir()]
    notes = []
    if ignored:
        shown = ", ".join(f if len(f) <= 60 else f[:57] + "..." for f in ignored[:3])
        more = f" and {len(ignored) - 3} more" if len(ignored) > 3 else ""
        notes.append(f"{name}: ignored {len(ignored)} zip member{'s' if len(ignored) > 1 else ''} that an agent does not use ({shown}{more}).")
    return dest / root, notes


def _index_shards(zf: zipfile.ZipFile, index: zipfile.ZipInfo, name: str) -> list[str]:
    """The shard file names an HF model.safetensors.index.json names (plain file names only)."""
    if index.file_size > limits().json_bytes:
        raise AgentError(f"{name}: model.safetensors.index.json is {human_bytes(index.file_size)}, over the limit of "
                         f"{human_bytes(limits().json_bytes)} (json_bytes, set by {ENV['json_bytes']}).")
    try:
        data = json.loads(zf.read(index).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, zipfile.BadZipFile, OSError, EOFError) as e:
        raise AgentError(f"{name}: model.safetensors.index.json is not valid JSON ({short(e)}).") from None
    return shard_names(data, f"{name}: model.safetensors.index.json")


def _declared_zip_entries(path: Path) -> int | None:
    """The entry count a zip's end-of-central-directory record declares (zip64 too), read before zipfile
    parses the whole directory; None when no record is found (zipfile then says what is wrong)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 65557))
            tail = f.read()
            at = tail.rfind(b"PK\x05\x06")
            if at < 0 or at + 22 > len(tail):
                return None
            count = int.from_bytes(tail[at + 10:at + 12], "little")
            if count == 0xFFFF and at >= 20 and tail[at - 20:at - 16] == b"PK\x06\x07":
                f.seek(int.from_bytes(tail[at - 12:at - 4], "little"))
                rec = f.read(56)
                if rec[:4] == b"PK\x06\x06" and len(rec) == 56:
                    count = int.from_bytes(rec[32:40], "little")
            return count
    except OSError:
        return None
