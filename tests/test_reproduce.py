"""cli.py reproduce: the metrics on synthetic inputs with known answers, two findings end to end on
synthetic agents, and the JSON schema and report files of a quick run on the shipped agents."""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from analysis.reproduce import context_pomdp, mean_ci, ratio_ci, return_conditioning, spearman_ci, spearman_in_range
from models.base import AgentConfig
from test_sweeps import ENV, ExactAgent

ROOT = Path(__file__).resolve().parent.parent


def test_spearman_counts_only_targets_inside_the_data():
    targets = [-50, 10, 20, 30, 40, 900]
    achieved = [99, 1, 2, 3, 4, -99]                    # the two outside would break the order
    assert spearman_in_range(targets, achieved, 0, 100) == pytest.approx(1.0)
    assert spearman_in_range([10, 20, 30], [3, 2, 1], 0, 100) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="at least 3 targets inside"):
        spearman_in_range([10, 20, 500], [1, 2, 3], 0, 100)
    returns = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])   # no spread: every resample is monotone
    assert spearman_ci([1, 2, 3], returns, 0, 10) == (1.0, 1.0)


def test_ratio_and_mean_intervals():
    assert ratio_ci([30, 30, 30], [10, 10, 10]) == (3.0, 3.0, 3.0)
    r, lo, hi = ratio_ci(np.arange(100, 200), np.arange(50, 100))
    assert lo < r < hi and r == pytest.approx(149.5 / 74.5)
    m = mean_ci([1.0, np.nan, 3.0])
    assert m["mean"] == 2.0 and m["n"] == 2


class StopAt(ExactAgent):
    """Ends every episode of the Counter env after `k` rewarded steps, whatever it is asked: return k."""

    def __init__(self, k: int, kind: str):
        self.k, self.kind = k, kind
        self.config = AgentConfig(kind=kind, obs_dim=3, act_dim=1, discrete=True, n_actions=2, env_id=ENV, max_ep_len=100)

    def start_rollout(self, n, targets=None, sample=True, seed=0, use_cache=True, uniforms=None):
        k = self.k

        class R:
            t = 0

            def act(self, obs):
                return np.full(len(obs), int(self.t >= k), np.int64)

            def observe(self, rewards):
                self.t += 1
        return R()


def test_context_finding_on_agents_with_known_returns():
    f = context_pomdp({"k20": StopAt(30, "dt"), "k1": StopAt(10, "dt"), "gru": StopAt(40, "gru"), "mlp": StopAt(5, "mlp")},
                      episodes=3)
    assert (f.numbers["k20_return"], f.numbers["k1_return"], f.numbers["gru_return"], f.numbers["mlp_return"]) == (30, 10, 40, 5)
    assert f.numbers["k20_over_k1"] == 3.0 and f.numbers["k20_over_k1_ci"] == [3.0, 3.0] and f.reproduced is True
    f = context_pomdp({"k20": StopAt(12, "dt"), "k1": StopAt(10, "dt"), "gru": StopAt(40, "gru"), "mlp": StopAt(5, "mlp")},
                      episodes=2)
    assert f.numbers["k20_over_k1"] == 1.2 and f.reproduced is False    # below 1.5: reported as not reproduced


def test_return_conditioning_on_an_agent_that_earns_its_target():
    f = return_conditioning({"exact": ExactAgent()}, episodes=2, n_targets=5)
    row = f.numbers["agents"][0]
    assert row["targets"] == [0.0, 15.0, 30.0, 45.0, 60.0] and row["achieved"] == row["targets"]
    assert f.numbers["spearman"] == 1.0 and row["spearman_ci"] == [1.0, 1.0] and f.reproduced is True
    assert list(f.figures) == ["return_conditioning_exact"]


def test_quick_run_writes_the_report_with_the_design_schema(tmp_path):
    res = subprocess.run([sys.executable, "cli.py", "reproduce", "--quick", "--json", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    by_id = {f["id"]: f for f in out["findings"]}
    assert list(by_id) == ["return_conditioning", "context_pomdp", "key_to_door", "compounding_error"]
    assert {"spearman", "agents"} <= set(by_id["return_conditioning"])
    assert {"k1_return", "k20_return", "gru_return", "mlp_return"} <= set(by_id["context_pomdp"])
    assert {"key_share_over_uniform", "action_key_share_over_uniform", "random_model_key_share_over_uniform",
            "dt_success", "mlp_success"} <= set(by_id["key_to_door"])
    for part in ("full", "masked"):
        assert {"horizon", "sequence_model_error", "single_step_error", "quantization_floor"} <= set(by_id["compounding_error"][part])
        assert by_id["compounding_error"][part]["horizon"] == 10
    assert all(isinstance(f["reproduced"], bool) for f in out["findings"])
    md = (tmp_path / "report.md").read_text()
    assert md.count("**Verdict:**") == 4 and "no target was moved" in md
    page = (tmp_path / "report.html").read_text()
    assert page.count("<img ") == 6 and "<table>" in page
    figs = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert len(figs) == 12 and sum(n.endswith(".png") for n in figs) == 6
    for n in figs:
        data = (tmp_path / "figures" / n).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" if n.endswith(".png") else ET.fromstring(data).tag.endswith("svg")
    assert json.loads((tmp_path / "findings.json").read_text())["findings"] == out["findings"]


def test_retrain_runs_every_seed_from_the_recipes(tmp_path, monkeypatch):
    """--retrain --seeds 2 on recipes cut to a few steps: every finding per seed, agents trained here."""
    import cli
    from models import recipes

    short = {k: {**v, "steps": 3} for k, v in recipes.SAMPLE_AGENTS.items()}
    monkeypatch.setattr(recipes, "SAMPLE_AGENTS", short)
    trained = []
    real = cli._train_recipe
    monkeypatch.setattr(cli, "_train_recipe", lambda name, seed, progress: trained.append((name, seed)) or real(name, seed, False))
    args = cli.build_parser().parse_args(["reproduce", "--retrain", "--seeds", "2", "--quick", "--json", "--out", str(tmp_path)])
    out = cli.cmd_reproduce(args)
    assert len(out["per_seed"]) == 2 and all(len(run) == 4 for run in out["per_seed"])
    assert sorted({s for _, s in trained}) == [0, 1] and len(trained) == 2 * 11   # 11 shipped agents used per seed
    assert "Per seed: seed 0:" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "findings.json").read_text())["meta"]["agents"] == "agents retrained with seeds 0..1"


def _cartpole_dt(env_id="keep"):
    from dataclasses import replace

    from models import load_agent

    agent = load_agent(ROOT / "sample_data/agents/cartpole-dt")
    if env_id != "keep":
        agent.config = replace(agent.config, env_id=env_id)
    return agent


def test_env_per_agent_is_parsed_and_checked_with_the_agents_spaces():
    from analysis.reproduce import AGENTS
    from cli import UserError, _agent_in_env, _reproduce_envs

    assert _reproduce_envs(["cartpole-dt=CartPole-v1", "keydoor-dt = keydoor"], AGENTS) == {
        "cartpole-dt": "CartPole-v1", "keydoor-dt": "keydoor"}
    assert _reproduce_envs(None, AGENTS) == {}
    for items, sentence in ((["CartPole-v1"], "--env expects AGENT=ID"), (["mine=CartPole-v1"], "no agent named 'mine'"),
                            (["cartpole-dt=CartPole-v1", "cartpole-dt=Acrobot-v1"], "two environments")):
        with pytest.raises(UserError, match=sentence):
            _reproduce_envs(items, AGENTS)
    shipped = _cartpole_dt()
    assert _agent_in_env("cartpole-dt", shipped, {}) is shipped
    assert _agent_in_env("cartpole-dt", shipped, {"cartpole-dt": "CartPole-v1"}) is shipped     # its own: nothing to do
    with pytest.raises(UserError, match="cartpole-dt already acts in CartPole-v1; --env applies only to an agent that names no"):
        _agent_in_env("cartpole-dt", shipped, {"cartpole-dt": "Pendulum-v1"})
    bare = _cartpole_dt(env_id=None)
    twin = _agent_in_env("cartpole-dt", bare, {"cartpole-dt": "CartPole-v1"})
    assert twin.config.env_id == "CartPole-v1" and bare.config.env_id is None
    with pytest.raises(UserError, match=r"the environment Pendulum-v1 gives observations of shape \(3,\)"):
        _agent_in_env("cartpole-dt", bare, {"cartpole-dt": "Pendulum-v1"})


def test_reproduce_env_reaches_the_findings_and_bad_choices_stop_it_first(tmp_path, monkeypatch, capsys):
    """--env on a copy of the shipped agents where cartpole-dt names no environment; run_all replaced by a stub
    that records what load() gives (the findings themselves are tested above and in the quick run)."""
    import shutil

    import cli
    from analysis import report, reproduce
    from models import save_agent

    root = tmp_path / "root"
    shutil.copytree(ROOT / "sample_data" / "agents", root / "sample_data" / "agents")
    save_agent(_cartpole_dt(env_id=None), root / "sample_data" / "agents" / "cartpole-dt")
    monkeypatch.setattr(cli, "ROOT", root)
    seen = {}

    def run_all(load, datasets, seed=0, quick=False, log=print):
        seen.update({n: load(n).config.env_id for n in ("cartpole-dt", "pendulum-dt")})
        return [reproduce.Finding("stub", "Stub", "a claim", "measured", True, {"x": 1})]

    monkeypatch.setattr(reproduce, "run_all", run_all)
    monkeypatch.setattr(report, "write_figures", lambda figs, *a, **k: [])   # the stub has none: no Chromium
    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    assert cli.main(["reproduce", "--json", "--out", str(out), "--env", "cartpole-dt=CartPole-v1"]) == 0
    assert seen == {"cartpole-dt": "CartPole-v1", "pendulum-dt": "Pendulum-v1"}
    meta = json.loads((out / "findings.json").read_text())["meta"]
    assert meta["envs"] == {"cartpole-dt": "CartPole-v1"} and "cartpole-dt in CartPole-v1" in meta["agents"]
    capsys.readouterr()
    seen.clear()
    for env, sentence in (("cartpole-dt=Pendulum-v1", "the environment Pendulum-v1 gives observations"),
                          ("pendulum-dt=MountainCarContinuous-v0", "pendulum-dt already acts in Pendulum-v1"),
                          ("Pendulum-v1", "--env expects AGENT=ID")):
        assert cli.main(["reproduce", "--json", "--out", str(out), "--env", env]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and sentence in err, err
    assert seen == {}                                                 # refused before any finding ran
