"""Agent uploads from strangers: every hostile file (bench/hostile_agents.py) gets one sentence, from
load_agent and from `cli.py inspect`, before anything big is allocated, imported or unpacked."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bench.hostile_agents import ACCEPTED, _hf_config, _hf_tensors, _safetensors, hostile_agent_files
from models import AgentError, load_agent

ROOT = Path(__file__).resolve().parents[1]
AGENTS = sorted(p for p in (ROOT / "sample_data" / "agents").iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile_agents")
    t0 = time.perf_counter()
    files = hostile_agent_files(d)
    return files, time.perf_counter() - t0


def _ids():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return [h["name"] for h in hostile_agent_files(tmp)]


NAMES = _ids()


def _case(hostile, name):
    return next(h for h in hostile[0] if h["name"] == name)


def test_hostile_files_are_small_and_quick_to_make(hostile):
    files, seconds = hostile
    assert seconds < 6, seconds   # the brief: < 3 s; slack for a loaded test machine
    assert len({h["name"] for h in files}) == len(files) >= 18
    for h in files:
        assert set(h) == {"name", "path", "expect", "secret"}
        assert h["path"].exists() and h["path"].stat().st_size < 3 << 20, h["name"]
        assert h["expect"] == h["expect"].lower()


@pytest.mark.parametrize("name", NAMES)
def test_load_agent_refuses_with_one_sentence(hostile, name, monkeypatch):
    h = _case(hostile, name)
    opened = []
    real_open = zipfile.ZipFile.open

    def spy(self, member, *a, **kw):
        opened.append(member.filename if isinstance(member, zipfile.ZipInfo) else member)
        return real_open(self, member, *a, **kw)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    if name in ACCEPTED:
        agent = load_agent(h["path"])
        assert any(h["expect"] in note.lower() for note in agent.notes), agent.notes
        assert all(PurePath_name(f) in {"config.json", "model.safetensors"} for f in opened), opened
        return
    with pytest.raises(AgentError) as err:
        load_agent(h["path"])
    msg = str(err.value)
    assert h["expect"] in msg.lower(), msg
    assert "\n" not in msg and msg.endswith(".") and len(msg) < 400, msg
    assert h["path"].name in msg   # names the file
    # nothing but the agent's own files is ever unpacked
    assert all(PurePath_name(f) in {"config.json", "model.safetensors"} for f in opened), opened


def PurePath_name(f: str) -> str:
    return f.rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def cli_runs(hostile):
    def run(h):
        return h["name"], subprocess.run([sys.executable, "cli.py", "inspect", str(h["path"])], cwd=ROOT,
                                         capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(run, hostile[0]))


@pytest.mark.parametrize("name", NAMES)
def test_cli_inspect_prints_one_error_line(hostile, cli_runs, name):
    h, proc = _case(hostile, name), cli_runs[name]
    assert "Traceback" not in proc.stderr, proc.stderr
    if name in ACCEPTED:
        assert proc.returncode == 0, proc.stderr
        return
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert h["expect"] in lines[0].lower()


def test_module_part_env_id_never_imports_the_module(hostile):
    path = _case(hostile, "env-id-module-part")["path"]
    code = ("import sys\nfrom models import AgentError, load_agent\n"
            f"try:\n    load_agent({str(path)!r})\nexcept AgentError as e:\n    print('refused', e)\n"
            "print('imported' if 'this' in sys.modules else 'clean')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "refused" in proc.stdout and proc.stdout.strip().endswith("clean"), proc.stdout
    assert "Beautiful is better" not in proc.stdout


def test_safe_env_constructors_refuse_module_parts_and_unregistered_ids():
    code = ("import sys, envs\n"
            "for make in (lambda i: envs.make(i), lambda i: envs.make_vec(i, 2, vectorization_mode='sync')):\n"
            "    for env_id in ('this:CartPole-v1', 'NoSuchEnv-v0', 'CartPole', None):\n"
            "        try:\n            make(env_id)\n            print('made', env_id)\n"
            "        except ValueError as e:\n            assert '\\n' not in str(e)\n"
            "print('imported' if 'this' in sys.modules else 'clean')\n"
            "env = envs.make('CartPole-v1'); env.close(); print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["clean", "ok"], proc.stdout


def test_env_id_error_is_also_a_gymnasium_error():
    import gymnasium as gym

    import envs

    with pytest.raises(gym.error.Error, match="names a module"):
        envs.make("this:CartPole-v1")


@pytest.mark.parametrize("agent_dir", AGENTS, ids=[p.name for p in AGENTS])
def test_shipped_agents_load_bit_for_bit(agent_dir):
    agent = load_agent(agent_dir)
    ref = load_file(agent_dir / "model.safetensors")
    state = agent.state_dict()
    assert set(state) == set(ref)
    for key, tensor in ref.items():
        assert state[key].dtype == tensor.dtype and torch.equal(state[key], tensor), key
    assert agent.notes == []   # every shipped env exists here and fits its agent


def test_spaces_check_accepts_the_shipped_agents_envs():
    from models.checkpoint import check_env

    for agent_dir in AGENTS:
        agent = load_agent(agent_dir)
        assert agent.config.env_id
        assert check_env(agent.config, agent_dir.name) == []


def test_unavailable_env_keeps_the_agent_with_a_note(monkeypatch):
    import gymnasium as gym

    import envs

    def unavailable(env_id):
        envs.check_env_id(env_id)
        raise gym.error.DependencyNotInstalled("MuJoCo is not installed, run `pip install \"gymnasium[mujoco]\"`")

    monkeypatch.setattr(envs, "env_spaces", unavailable)
    agent = load_agent(ROOT / "sample_data" / "agents" / "pendulum-dt")
    assert len(agent.notes) == 1 and "not available here" in agent.notes[0] and "MuJoCo" in agent.notes[0]
    assert "\n" not in agent.notes[0]


def test_hf_sharded_zip_extracts_only_the_index_and_its_shards(tmp_path):
    tensors = _hf_tensors()
    keys = sorted(tensors)
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[:half], "model-00002-of-00002.safetensors": keys[half:]}
    index = {"metadata": {}, "weight_map": {k: f for f, ks in shards.items() for k in ks}}
    cfg = json.dumps(_hf_config())
    with zipfile.ZipFile(tmp_path / "sharded.zip", "w") as zf:
        zf.writestr("hf/config.json", cfg)
        zf.writestr("hf/model.safetensors.index.json", json.dumps(index))
        for f, ks in shards.items():
            zf.writestr(f"hf/{f}", _safetensors({k: tensors[k] for k in ks}))
        zf.writestr("hf/pytorch_model.bin", b"\x80\x04K\x01.")   # never opened
    single = tmp_path / "single"
    single.mkdir()
    (single / "config.json").write_text(cfg)
    (single / "model.safetensors").write_bytes(_safetensors(tensors))
    a, b = load_agent(tmp_path / "sharded.zip"), load_agent(single)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert any("pytorch_model.bin" in n for n in a.notes)

    bad = dict(index, weight_map={k: "../model-00001-of-00002.safetensors" for k in keys})
    with zipfile.ZipFile(tmp_path / "escape.zip", "w") as zf:
        zf.writestr("hf/config.json", cfg)
        zf.writestr("hf/model.safetensors.index.json", json.dumps(bad))
    with pytest.raises(AgentError, match="expected a plain"):
        load_agent(tmp_path / "escape.zip")


def test_limits_follow_their_environment_variables(hostile, monkeypatch):
    h = _case(hostile, "native-n-actions-1e12")
    monkeypatch.setenv("SEQLENS_MAX_AGENT_PARAMS", "1000")
    with pytest.raises(AgentError, match="agent_params, set by SEQLENS_MAX_AGENT_PARAMS"):
        load_agent(ROOT / "sample_data" / "agents" / "cartpole-mlp")
    monkeypatch.setenv("SEQLENS_MAX_ACTIONS", str(10**13))
    with pytest.raises(AgentError):   # within the action limit now: the size limit refuses it instead
        load_agent(h["path"])
