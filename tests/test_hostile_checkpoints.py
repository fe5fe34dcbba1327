"""Hostile checkpoints for `cli.py convert-agent` (issue 26, items 1 and 2): every case in
bench/hostile_checkpoints.py refused with one sentence naming the file, exit code 2, no OUT left behind, and
(in a fresh process) no more than 200 MB of peak RSS for the cases that allocated gigabytes before; bfloat16
and float16 checkpoints convert exactly; the pickle reader refuses crafted opcodes; CLI JSON never holds NaN.
"""
import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import cli
from bench.hostile_checkpoints import (convert_refusal, corl_config, corl_state, corl_stats, hostile_checkpoint_files,
                                       rewrite_pickle, write_corl)
import models.convert
from models import load_agent

ROOT = Path(__file__).resolve().parent.parent
# the cases that allocated gigabytes (or would make a C unpickler allocate) before this reader
MEMORY = ["corl-bytearray-3gib", "hf-bytearray-3gib", "corl-object-array-2e28", "corl-stride0-timestep-table",
          "corl-config-30mb", "corl-pickle-17mib", "corl-memo-index-4e9"]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return {c["name"]: c for c in hostile_checkpoint_files(tmp_path_factory.mktemp("hostile_checkpoints"))}


def run_cli(capsys, *args):
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


NAMES = ["corl-bytearray-3gib", "hf-bytearray-3gib", "corl-object-array-2e28", "corl-object-array-3",
         "corl-stride0-timestep-table", "corl-overlapping-views", "corl-meta-state-mean", "corl-meta-weight",
         "corl-sparse-weight", "corl-shadowed-detach", "corl-memo-index-4e9", "corl-pickle-17mib", "corl-config-30mb",
         "corl-max-action-1e308", "corl-reward-scale-1e300", "corl-reward-scale-1e-300", "corl-episode-len-1e9"]


def test_every_case_is_listed(cases):
    assert sorted(cases) == sorted(NAMES)
    assert all(c["kind"] == "convert" and c["expect"] == c["expect"].lower() for c in cases.values())


@pytest.mark.parametrize("name", NAMES)
def test_refused_with_one_sentence_and_no_output(cases, tmp_path, capsys, name):
    case = cases[name]
    out = tmp_path / "deep" / "out"
    t0 = time.perf_counter()
    rc, stdout, err = run_cli(capsys, "convert-agent", case["path"], "--out", out, "--json")
    seconds = time.perf_counter() - t0
    lines = err.strip().splitlines()
    assert rc == 2 and stdout == "" and len(lines) == 1 and lines[0].startswith(f"error: {name}"), err
    assert case["expect"] in lines[0].lower(), lines[0]
    assert "Traceback" not in err
    assert not out.exists() and not (tmp_path / "deep").exists()   # nothing written, not even the parent
    assert seconds < 1.0, f"{name}: refused in {seconds:.2f} s"
    assert convert_refusal(case["path"]) == lines[0].removeprefix("error: ")


_FRESH = """
import json, resource, sys
from bench.hostile_checkpoints import convert_refusal
import cli, models, models.checkpoint, models.convert, models.corl_import, models.hf_import, models.pt_reader, models.pickle_scan, torch, yaml


def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field + ":"))


def reset():   # the peak since here: Linux resets VmHWM on '5' (ru_maxrss would include the parent's peak)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


convert_refusal(sys.argv[1])          # warm: first-call imports are not a refusal's
out = []
for path in sys.argv[2:]:
    reset()
    before = status("VmRSS")
    sentence = convert_refusal(path)
    out.append([path, round(status("VmHWM") - before, 1), sentence])
print(json.dumps(out))
"""


def test_memory_cases_peak_under_200_mb_in_a_fresh_process(cases):
    """Peak RSS (VmHWM, reset before each case) minus RSS before it, per case, in a fresh process."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak RSS")
    paths = [str(cases[n]["path"]) for n in MEMORY]
    res = subprocess.run([sys.executable, "-c", _FRESH, str(cases["corl-max-action-1e308"]["path"]), *paths], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(res.stdout.strip().splitlines()[-1])
    for (path, growth, sentence), name in zip(rows, MEMORY):
        assert sentence and cases[name]["expect"] in sentence.lower(), (name, sentence)
        assert growth < 200, f"{name}: peak RSS grew {growth} MB"
    print({name: growth for (_, growth, _), name in zip(rows, MEMORY)})


# ---- what must still convert --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_half_and_double_checkpoints_convert_exactly(tmp_path, capsys, dtype):
    """bfloat16 / float16 / float64 weights and statistics (a bf16 state_mean was a traceback) convert to the
    float32 values torch's own .float() gives."""
    state = corl_state()
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    mean, std = corl_stats()
    src = write_corl(tmp_path / "src", {"model_state": state, "state_mean": torch.from_numpy(mean).to(dtype),
                                        "state_std": torch.from_numpy(std).to(dtype)})
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "convert-agent", src, "--out", out, "--json")
    assert rc == 0, err
    agent = load_agent(out)
    np.testing.assert_array_equal(agent.config.state_mean, torch.from_numpy(mean).to(dtype).double().numpy()[0])
    np.testing.assert_array_equal(agent.config.state_std, torch.from_numpy(std).to(dtype).double().numpy()[0])
    got = dict(agent.named_parameters())
    torch.testing.assert_close(got["embed_state.weight"], state["state_emb.weight"].float(), atol=0, rtol=0)
    torch.testing.assert_close(got["encoder.h.0.attn.c_attn.weight"], state["blocks.0.attention.in_proj_weight"].float(),
                               atol=0, rtol=0)


def test_parameters_and_protocol_4_are_read(tmp_path, capsys):
    """nn.Parameter entries (torch.save writes _rebuild_parameter) and a pickle protocol 4 file still convert."""
    state = corl_state()
    state = {k: torch.nn.Parameter(v, requires_grad=False) if v.is_floating_point() else v for k, v in state.items()}
    mean, std = corl_stats()
    src = write_corl(tmp_path / "src", {"model_state": state, "state_mean": mean, "state_std": std})
    torch.save({"model_state": state, "state_mean": mean, "state_std": std}, src / "dt_checkpoint.pt", pickle_protocol=4)
    rc, _, err = run_cli(capsys, "convert-agent", src, "--out", tmp_path / "out")
    assert rc == 0, err


def test_declared_tensor_values_are_checked_against_the_agent_budget(tmp_path, capsys, monkeypatch):
    src = write_corl(tmp_path / "src")
    monkeypatch.setenv("SEQLENS_MAX_AGENT_PARAMS", "1000")
    rc, _, err = run_cli(capsys, "convert-agent", src, "--out", tmp_path / "out")
    assert rc == 2 and "tensor values, over the limit of 1,000 (agent_params, set by SEQLENS_MAX_AGENT_PARAMS)" in err, err
    assert not (tmp_path / "out").exists()


# ---- the output folder ----------------------------------------------------------------------------------------
def test_late_failure_leaves_no_output_and_keeps_a_users_files(tmp_path, capsys, monkeypatch):
    """A failure after writing (the reload) removes what this call wrote: OUT if it made it; with --force into a
    user's folder, the user's files stay and nothing of ours is left."""
    import models
    from models.errors import AgentError

    src = write_corl(tmp_path / "src")

    def fail(*a, **k):
        raise AgentError("reload failed (test).")

    monkeypatch.setattr(models, "load_agent", fail)
    out = tmp_path / "new" / "out"
    rc, _, err = run_cli(capsys, "convert-agent", src, "--out", out)
    assert rc == 2 and "reload failed" in err and not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (mine / "config.json").write_text("{}")
    rc, _, err = run_cli(capsys, "convert-agent", src, "--out", mine, "--force")
    assert rc == 2 and sorted(p.name for p in mine.iterdir()) == ["config.json", "notes.txt"]
    assert (mine / "config.json").read_text() == "{}" and (mine / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "src"]   # no temporary folder left
    monkeypatch.undo()
    rc, _, err = run_cli(capsys, "convert-agent", src, "--out", mine, "--force")
    assert rc == 0 and sorted(p.name for p in mine.iterdir()) == ["config.json", "model.safetensors", "notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "src"]


def test_output_size_bound_is_checked_before_writing(tmp_path, capsys, monkeypatch):
    src = write_corl(tmp_path / "src")
    monkeypatch.setattr(models.convert, "CONVERT_SIZE_FACTOR", 0)
    monkeypatch.setattr(models.convert, "CONVERT_SIZE_SLACK", 1000)
    rc, _, err = run_cli(capsys, "convert-agent", src, "--out", tmp_path / "out")
    assert rc == 2 and "more than 0x + 1 MiB" in err and "dt_checkpoint.pt" in err and not (tmp_path / "out").exists()


# ---- config.yaml --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("label, text, expect", [
    ("300 KB of padding", None, "over the limit of 64 kib"),
    ("max_action 1e7", dict(max_action=1e7), "field 'max_action' must be in (0, 1e+06]"),
    ("max_action 400 digits", dict(max_action=10 ** 400), "field 'max_action' must be a finite number"),
    ("reward_scale 1e-7", dict(reward_scale=1e-7), "field 'reward_scale' must be between 1e-06 and 1e+06"),
    ("embedding_dim huge", dict(embedding_dim=1 << 20, num_heads=1), "field 'embedding_dim' must be at most 65536"),
    ("dropout 2", dict(residual_dropout=2.0), "field 'residual_dropout' must be between 0 and 1"),
    ("env_name long", dict(env_name="x" * 500), "field 'env_name' is 500 characters long"),
])
def test_config_values_out_of_range_are_refused(tmp_path, capsys, label, text, expect):
    import yaml

    if text is None:   # accepted (and parsed for seconds at larger sizes) before the cap
        config_text = yaml.dump(corl_config()) + "padding:\n" + "- 0\n" * 75_000
        src = write_corl(tmp_path / "src", config_text=config_text)
    else:
        src = write_corl(tmp_path / "src", cfg=corl_config(**text))
    rc, _, err = run_cli(capsys, "convert-agent", src, "--out", tmp_path / "out")
    assert rc == 2 and expect in (err.lower() if text is None else err), err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_odd_training_record_numbers_are_not_copied(tmp_path, capsys):
    src = write_corl(tmp_path / "src", cfg=corl_config(update_steps=10 ** 30, batch_size=float("nan"),
                                                      target_returns=list(range(1000)), learning_rate=3e-4))
    rc, _, err = run_cli(capsys, "convert-agent", src, "--out", tmp_path / "out")
    assert rc == 0, err
    training = load_agent(tmp_path / "out").config.training
    assert training.get("learning_rate") == 3e-4
    assert "update_steps" not in training and "batch_size" not in training and "target_returns" not in training


# ---- the pickle reader on crafted opcodes ---------------------------------------------------------------------
def _crafted(tmp_path: Path, edit) -> Path:
    src = write_corl(tmp_path / "src")
    rewrite_pickle(src / "dt_checkpoint.pt", edit)
    return src


def _append_entry(payload: bytes):
    """Insert `'zz': <payload>` into the top-level dict: just before the pickle's final STOP there is the last
    SETITEMS of the top dict, so add SETITEM after it (the dict is on the stack)."""
    def edit(data: bytes) -> bytes:
        assert data.endswith(b".")
        return data[:-1] + b"X" + struct.pack("<I", 2) + b"zz" + payload + b"s."
    return edit


@pytest.mark.parametrize("label, edit, expect", [
    ("NEWOBJ", _append_entry(b"ccollections\nOrderedDict\n)\x81"), "opcode newobj"),
    ("INST", _append_entry(b"(icollections\nOrderedDict\n"), "opcode inst"),
    ("BYTEARRAY8", _append_entry(b"\x96" + struct.pack("<Q", 8) + bytes(8)), "opcode bytearray8"),
    ("BYTEARRAY8 3 GiB", _append_entry(b"\x96" + struct.pack("<Q", 3 << 30)), "3221225472 bytes in a bytearray8"),
    ("BINBYTES8 beyond the file", _append_entry(b"\x8e" + struct.pack("<Q", 3 << 30)), "damaged pickle"),
    ("BUILD on an allowed function", _append_entry(b"ctorch._utils\n_rebuild_tensor_v2\n}X\x08\x00\x00\x00__call__K\x01sb"),
     "sets attributes on torch._utils._rebuild_tensor_v2"),
    ("BUILD on a state dict", _append_entry(b"ccollections\nOrderedDict\n)R}X\x06\x00\x00\x00updateK\x01sb"),
     "sets attributes other than _metadata"),
    ("STACK_GLOBAL os.system", _append_entry(b"\x8c\x02os\x8c\x06system\x93"), "the global os.system"),
    ("deep nesting", _append_entry(b"]" * 100 + b"a" * 99), "nests containers more than 32 deep"),
    ("storage on meta", _append_entry(b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
                                      b"X\x01\x00\x00\x000X\x04\x00\x00\x00metaK\x01tQK\x00K\x01\x85K\x01\x85\x89ccollections\n"
                                      b"OrderedDict\n)RtR"), "on the device 'meta'"),
    ("storage not in the zip", _append_entry(b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
                                             b"X\x03\x00\x00\x00999X\x03\x00\x00\x00cpuK\x01tQK\x00K\x01\x85K\x01\x85\x89"
                                             b"ccollections\nOrderedDict\n)RtR"), "names the storage data/999"),
    ("storage size lie", _append_entry(b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
                                       b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ\x00\x00\x00@tQK\x00K\x01\x85K\x01\x85\x89"
                                       b"ccollections\nOrderedDict\n)RtR"), "declares 1,073,741,824 float32 values"),
    ("tensor past its storage", _append_entry(b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\n"
                                              b"FloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x08tQK\x05K\x04\x85K"
                                              b"\x01\x85\x89ccollections\nOrderedDict\n)RtR"),
     "a tensor of 4 values at offset 5 of storage data/0, which holds 8"),
])
def test_crafted_pickles_are_refused(tmp_path, capsys, label, edit, expect):
    src = _crafted(tmp_path, edit)
    t0 = time.perf_counter()
    rc, _, err = run_cli(capsys, "convert-agent", src, "--out", tmp_path / "out")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and expect in err.lower(), err
    assert time.perf_counter() - t0 < 1.0 and not (tmp_path / "out").exists()


def test_shared_containers_are_walked_once(tmp_path, capsys):
    """A pickle can share a list with itself 2^30 ways in a few hundred bytes: walked once per container."""
    body = (b"]q\x00K\x01a0" + b"".join(b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86q" + bytes([i + 1]) + b"0" for i in range(30))
            + b"h\x1e")   # t30 = (t29, t29), t29 = (t28, t28), ...: 2^30 paths to the one list
    src = _crafted(tmp_path, _append_entry(body))
    t0 = time.perf_counter()
    rc, _, err = run_cli(capsys, "convert-agent", src, "--out", tmp_path / "out")
    assert rc == 0, err   # an unused extra entry of plain values is ignored
    assert time.perf_counter() - t0 < 5.0


def test_real_torch_save_pickle_passes_the_opcode_scan():
    """What torch.save writes for a state dict, numpy statistics and a parameter uses only allowed opcodes."""
    import io
    import pickletools
    import zipfile

    from models.pickle_scan import ALLOWED_OPCODES

    mean, std = corl_stats()
    buf = io.BytesIO()
    torch.save({"model_state": corl_state(), "state_mean": mean, "state_std": std, "p": torch.nn.Parameter(torch.ones(2))}, buf)
    with zipfile.ZipFile(buf) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    assert {op.name for op, _, _ in pickletools.genops(data)} <= ALLOWED_OPCODES


# ---- JSON ---------------------------------------------------------------------------------------------------
def test_cli_json_never_holds_nan(capsys, monkeypatch):
    """evaluate printed NaN for a config whose action bounds were infinite; whatever a command returns, the JSON
    is strict: null, and a 'nulls' entry saying which fields and why."""
    def fake(args):
        return {"results": [{"target_return": 100.0, "mean_return": float("nan"), "std_return": np.float32("inf"),
                             "ci_low": -float("inf"), "returns": np.array([1.0, np.nan])}], "n": np.int64(3)}

    monkeypatch.setattr(cli.data, "cmd_inspect", fake)   # the handler where cli/data.py registers it
    rc, stdout, _ = run_cli(capsys, "inspect", "anything", "--json")

    def strict(text):
        raise ValueError(f"not JSON: {text}")

    res = json.loads(stdout, parse_constant=strict)
    assert rc == 0 and res["n"] == 3
    r = res["results"][0]
    assert r["mean_return"] is None and r["std_return"] is None and r["ci_low"] is None and r["returns"] == [1.0, None]
    assert res["nulls"] == {"results[0].mean_return": "was NaN, which JSON cannot hold",
                            "results[0].std_return": "was Infinity, which JSON cannot hold",
                            "results[0].ci_low": "was -Infinity, which JSON cannot hold",
                            "results[0].returns[1]": "was NaN, which JSON cannot hold"}
