"""reproduce --retrain's (agent, seed) pieces (analysis/research/seed_runs.py): trained as Ray tasks on this machine and in
this process with recipes cut to a few steps; the same seed gives the same weights either way; the CLI's flags and
its one-sentence refusals."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.research import seed_runs as S
ROOT = Path(__file__).resolve().parents[1]
PIECES = [("cartpole-mlp", 0), ("cartpole-mlp", 1), ("masked-cartpole-dt-k1", 0), ("masked-cartpole-dt-k1", 1)]
SCALE = 0.002   # cartpole-mlp 4000 steps -> 8, masked-cartpole-dt-k1 2000 -> 4


def _raylets() -> int:
    n = 0
    for p in Path("/proc").iterdir():
        try:
            n += p.name.isdigit() and b"raylet" in (p / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            pass
    return n


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


@pytest.fixture(scope="module")
def ray_run(tmp_path_factory):
    pytest.importorskip("ray")
    import ray

    before = _raylets()
    out = tmp_path_factory.mktemp("ray-pieces")
    paths = S.train_pieces(PIECES, out, use_ray=True, steps_scale=SCALE, progress=False)
    assert not ray.is_initialized() and _raylets() <= before    # the local Ray it started is gone
    return out, paths


def test_ray_tasks_train_every_piece_and_save_checkpoints_and_logs(ray_run):
    from models import load_agent

    out, paths = ray_run
    assert list(paths) == PIECES
    for (name, seed), path in paths.items():
        assert path == out.resolve() / "agents" / name / f"seed{seed}"
        assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
        agent = load_agent(path)
        t = agent.config.training
        steps = 8 if name == "cartpole-mlp" else 4
        assert (agent.kind, t["seed"], t["steps"], t["torch_threads"]) == (
            "mlp" if name == "cartpole-mlp" else "dt", seed, steps, 1)
        log = (out / "logs" / f"{name}-seed{seed}.log").read_text()
        assert f"training {name} with seed {seed}" in log and f"{steps}/{steps}" in log
        assert f"{name} seed {seed} trained in" in log
        assert f", nice {os.nice(0)}\n" in log   # the driver's priority: a local Ray adds 15 unless told (seed_runs.py)
    for name in ("cartpole-mlp", "masked-cartpole-dt-k1"):   # seeds differ
        a, b = _tensors(paths[(name, 0)]), _tensors(paths[(name, 1)])
        assert any(not (a[k] == b[k]).all() for k in a)


def test_the_same_piece_without_ray_gives_the_same_weights(ray_run, tmp_path):
    """Training is deterministic by seed with one torch thread: a Ray worker and this process agree bit for bit."""
    _, by_ray = ray_run
    here = S.train_pieces(PIECES, tmp_path, use_ray=False, steps_scale=SCALE, progress=False)
    assert list(here) == PIECES
    for piece in PIECES:
        a, b = _tensors(here[piece]), _tensors(by_ray[piece])   # (the file's metadata order is Rust's hash order)
        assert list(a) == list(b) and all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and (a[k] == b[k]).all()
                                          for k in a)
        cfg = json.loads((here[piece] / "config.json").read_text())
        assert cfg["training"]["seed"] == piece[1] and (tmp_path / "logs" / f"{piece[0]}-seed{piece[1]}.log").is_file()


def test_findings_take_pieces_from_earlier_runs_and_name_what_is_missing(ray_run, tmp_path):
    out, paths = ray_run
    # saved earlier: DIR/<agent>/seed<k>/ (or the --out holding agents/)
    for d in (out / "agents", out):
        found = S.agent_checkpoints(["cartpole-mlp", "masked-cartpole-dt-k1"], [0, 1], tmp_path, from_agents=d)
        assert found == paths
    with pytest.raises(S.SeedRunError, match=r"need cartpole-mlp seed 2; masked-cartpole-dt-k1 seed 2, which .* lacks: "
                                             r"train them with `cli.py reproduce --retrain --train-only --agents "
                                             r"cartpole-mlp,masked-cartpole-dt-k1 --seed-list 2"):
        S.agent_checkpoints(["cartpole-mlp", "masked-cartpole-dt-k1"], [1, 2], tmp_path, from_agents=out / "agents")
    # train some now, the rest from DIR: nothing trains before the check passes
    with pytest.raises(S.SeedRunError, match="cartpole-dt seed 0, which --agents leaves out"):
        S.agent_checkpoints(["cartpole-mlp", "cartpole-dt"], [0], tmp_path, train=["cartpole-mlp"])
    assert not (tmp_path / "agents").exists()
    mixed = S.agent_checkpoints(["cartpole-mlp", "masked-cartpole-dt-k1"], [1], tmp_path, train=["cartpole-mlp"],
                                from_agents=out / "agents", steps_scale=SCALE, progress=False)
    assert mixed[("masked-cartpole-dt-k1", 1)] == paths[("masked-cartpole-dt-k1", 1)]
    assert mixed[("cartpole-mlp", 1)] == tmp_path.resolve() / "agents" / "cartpole-mlp" / "seed1"


def test_cli_trains_one_piece_as_a_ray_task(tmp_path):
    pytest.importorskip("ray")
    res = subprocess.run([sys.executable, "cli.py", "reproduce", "--retrain", "--seeds", "1", "--agents", "cartpole-mlp",
                          "--train-only", "--ray", "--steps-scale", "0.001", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "agents" / "cartpole-mlp" / "seed0" / "model.safetensors").is_file()
    assert "4/4" in (tmp_path / "logs" / "cartpole-mlp-seed0.log").read_text()   # 4000 x 0.001 steps
    assert "a log per piece in" in res.stderr and "trained 1 piece(s)" in res.stdout


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv, message", [
    (["--retrain", "--agents", "no-such-agent", "--train-only"], "no recipe named 'no-such-agent'"),
    (["--ray"], "--ray applies to training: add --retrain"),
    (["--agents", "cartpole-mlp"], "--agents applies to training"),
    (["--retrain", "--train-only", "--from-agents", "x"], "--train-only stops before the findings"),
    (["--retrain", "--from-agents", "x"], "name them with --agents"),
    (["--retrain", "--seed-list", "1,b"], "--seed-list expects comma-separated integers"),
    (["--retrain", "--steps-scale", "0"], "--steps-scale must be > 0"),
    (["--retrain", "--agents", "cartpole-mlp"], "which --agents leaves out"),
    (["--retrain", "--agents", "cartpole-mlp", "--train-only", "--ray", "127.0.0.1:{port}"], "cannot reach a Ray cluster at"),
])
def test_cli_refuses_bad_input_in_one_sentence(argv, message, tmp_path, capsys):
    import cli

    argv = [a.format(port=_closed_port()) for a in argv]
    assert cli.main(["reproduce", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out" / "agents").exists()
    if "ray" in sys.modules:
        assert not sys.modules["ray"].is_initialized()


def test_steps_scale_and_the_log_stream():
    assert S.scaled_steps(4000, 0.002) == 8 and S.scaled_steps(3000, 1e-9) == 1 and S.scaled_steps(800, 1.0) == 800
    import io

    buf = io.StringIO()
    log = S._LogStream([buf])
    log.write("start\n")
    for i in range(100):   # a bar's redraws: the first one, then at most one per LOG_UPDATE_S, and always the last
        log.write(f"\rbar {i}")
    log.write("\n")
    log.write("done\n")
    assert buf.getvalue() == "start\nbar 0\nbar 99\ndone\n"


def test_a_failed_piece_is_one_sentence_and_the_others_are_kept(tmp_path, monkeypatch):
    from models import recipes

    monkeypatch.setitem(recipes.SAMPLE_AGENTS, "broken", {"kind": "mlp", "data": "no-such-dataset", "steps": 10})
    with pytest.raises(S.SeedRunError, match=r"^1 of 2 piece\(s\) failed: broken seed 0 \(DatasetError: .*broken-seed0.log\); "
                                             r"the 1 that trained are saved in"):
        S.train_pieces([("broken", 0), ("keydoor-mlp", 0)], tmp_path, steps_scale=SCALE, progress=False)
    assert (tmp_path / "agents" / "keydoor-mlp" / "seed0" / "model.safetensors").is_file()
    assert not (tmp_path / "agents" / "broken").exists()
    assert "Traceback" in (tmp_path / "logs" / "broken-seed0.log").read_text()


def test_pieces_go_to_ray_longest_first_by_the_shipped_agents_training_time():
    order = S.longest_first([("keydoor-mlp", 1), ("no-such-agent", 1), ("masked-cartpole-gru", 1), ("cartpole-dt", 1),
                             ("keydoor-mlp", 2)])
    secs = {n: json.loads((S.ROOT / "sample_data/agents" / n / "config.json").read_text())["training"]["seconds"]
            for n in ("keydoor-mlp", "masked-cartpole-gru", "cartpole-dt")}
    assert secs["cartpole-dt"] > secs["masked-cartpole-gru"] > secs["keydoor-mlp"]
    assert order == [("cartpole-dt", 1), ("masked-cartpole-gru", 1), ("keydoor-mlp", 1), ("keydoor-mlp", 2),
                     ("no-such-agent", 1)]
