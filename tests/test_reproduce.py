"""cli.py reproduce: the metrics on synthetic inputs with known answers, two findings end to end on
synthetic agents, and the JSON schema and report files of a quick run on the shipped agents."""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from analysis.research import reproduce as RP
from analysis.research.findings import verdict
from analysis.research.reproduce import context_pomdp, mean_ci, ratio_ci, return_conditioning, spearman_ci, spearman_in_range
from models.base import AgentConfig, RolloutBase
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

        class R(RolloutBase):
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
    # the verdict is findings.toml's rule on the pooled values (one seed here)
    assert f.spec.rule.text == "estimate >= 1.5 and ci_low > 1.0" and f.verdict == "reproduced"
    assert f.pooled["k20_over_k1"] == {"estimate": 3.0, "ci_low": 3.0, "ci_high": 3.0, "n_seeds": 1, "per_seed": {0: 3.0}}
    assert f.pooled["gru_over_mlp"]["estimate"] == 8.0 and f.pooled["k1_return"]["estimate"] == 10.0
    assert [c["holds"] for c in f.comparisons] == [True, True]
    f = context_pomdp({"k20": StopAt(12, "dt"), "k1": StopAt(10, "dt"), "gru": StopAt(40, "gru"), "mlp": StopAt(5, "mlp")},
                      episodes=2)
    assert f.numbers["k20_over_k1"] == 1.2 and f.reproduced is False    # below 1.5: reported as not reproduced
    assert f.verdict == "not reproduced" and [c["holds"] for c in f.comparisons] == [False, True]
    j = f.to_json()
    assert (j["estimate"], j["n_seeds"], j["per_seed"], j["rule"]) == (1.2, 1, {"0": 1.2}, f.spec.rule.text)
    assert j["secondary"]["gru_over_mlp"]["estimate"] == 8.0 and j["target"].startswith("K=20 earns")


def test_context_finding_pools_seeds():
    """Two seeds' raw values: the estimate is the mean of the per-seed ratios, the rule reads the pooled CI."""
    a = context_pomdp({"k20": StopAt(30, "dt"), "k1": StopAt(10, "dt"), "gru": StopAt(40, "gru"), "mlp": StopAt(5, "mlp")},
                      episodes=2)
    b = context_pomdp({"k20": StopAt(12, "dt"), "k1": StopAt(10, "dt"), "gru": StopAt(40, "gru"), "mlp": StopAt(5, "mlp")},
                      episodes=2)
    pooled = RP.pool_runs([a], {1: {"findings": RP.seed_results([b])}})[0]
    assert a.pooled["k20_over_k1"]["n_seeds"] == 1                  # the run itself stays on its own seed
    a = pooled
    p = a.pooled["k20_over_k1"]
    assert p["n_seeds"] == 2 and p["per_seed"] == {0: 3.0, 1: 1.2} and p["estimate"] == pytest.approx(2.1)
    assert (p["ci_low"], p["ci_high"]) == (1.2, 3.0)                 # resampling two seeds: 1.2, 2.1 or 3.0
    assert a.reproduced is True                                     # 2.1 >= 1.5 and 1.2 > 1.0


def test_conditioning_metrics_have_known_answers():
    def agent(achieved, targets=(0.0, 10.0, 20.0, 30.0, 40.0), lo=0.0, hi=40.0):
        return {"targets": list(targets), "range": [lo, hi], "returns": [np.full(3, a, float) for a in achieved]}

    exact, half, off = agent([0, 10, 20, 30, 40]), agent([10, 15, 20, 25, 30]), agent([4, 14, 24, 34, 44])
    assert RP.agent_slope(exact) == pytest.approx(1.0) and RP.agent_calibration_mae(exact) == 0.0
    assert RP.agent_slope(half) == pytest.approx(0.5) and RP.agent_calibration_mae(half) == pytest.approx(6 / 40)
    assert RP.agent_calibration_mae(off) == pytest.approx(0.1) and RP.agent_spearman(off) == pytest.approx(1.0)
    raw = {"a": exact, "b": half, "c": off}
    assert RP.conditioning_slope(raw) == pytest.approx(0.5)          # the slope farthest from 1
    assert RP.conditioning_slope({"a": exact, "s": agent([0, 20, 40, 60, 80])}) == pytest.approx(2.0)
    assert RP.conditioning_calibration_mae(raw) == pytest.approx(6 / 40)    # the worst agent
    flat = agent([5, 5, 5, 5, 5])
    assert RP.agent_spearman(flat) == 0.0 and RP.conditioning_spearman({"a": exact, "f": flat}) == 0.0
    outside = agent([0, 10, 20, 30, 40, -999], targets=(0.0, 10.0, 20.0, 30.0, 40.0, 90.0))
    assert RP.agent_slope(outside) == pytest.approx(1.0)            # targets outside the data's range are left out


def test_optional_agents_missing_or_broken():
    def load(name):
        raise FileNotFoundError(f"{name} does not exist.")

    assert RP.optional_agent(load, "no-such-agent") == (None, "no-such-agent is not trained yet")
    with pytest.raises(FileNotFoundError):
        RP.optional_agent(load, "cartpole-dt")              # shipped: a failure to load is an error, not "not trained"
    assert RP.optional_agent(lambda n: "agent", "no-such-agent") == ("agent", None)

    def seed_run(name):   # a seed run trains only the findings' agents: a shipped extra is left out, not an error
        raise RP.NotProvided(f"the findings asked for {name} seed 3, which --retrain / --from-agents did not provide.")
    assert RP.optional_agent(seed_run, "pendulum-tt") == (None, "the findings asked for pendulum-tt seed 3, which "
                                                                 "--retrain / --from-agents did not provide.")
    from analysis.research.seed_runs import findings_agents
    assert "pendulum-tt" in RP.OPTIONAL and "pendulum-tt" not in findings_agents()
    assert {"masked-cartpole-mlp", "keydoor-dt-k1", "pendulum-tt-500"} <= set(findings_agents())


def test_return_conditioning_on_an_agent_that_earns_its_target():
    f = return_conditioning({"exact": ExactAgent()}, episodes=2, n_targets=5)
    row = f.numbers["agents"][0]
    assert row["targets"] == [0.0, 15.0, 30.0, 45.0, 60.0] and row["achieved"] == row["targets"]
    assert f.numbers["spearman"] == 1.0 and row["spearman_ci"] == [1.0, 1.0] and f.reproduced is True
    assert row["slope"] == 1.0 and row["calibration_mae"] == 0.0
    assert {m: f.pooled[m]["estimate"] for m in ("spearman", "slope", "calibration_mae")} == {
        "spearman": pytest.approx(1.0), "slope": pytest.approx(1.0), "calibration_mae": 0.0}
    assert f.pooled["slope [exact]"]["estimate"] == pytest.approx(1.0)
    assert list(f.figures) == ["return_conditioning_exact"]


def _shipped(name):
    from models import load_agent

    return load_agent(ROOT / "sample_data" / "agents" / name)


def test_key_door_patching_on_the_shipped_agent():
    from analysis.interp.keydoor_credit import restored
    from trajectories import load_dataset
    from trajectories.samples import SAMPLE_DIR

    p, skipped = RP.key_door_patching(_shipped("keydoor-dt"), load_dataset(SAMPLE_DIR / "keydoor.npz"), max_pairs=2)
    assert p.shape == (2, 4) and skipped == 0 and np.isfinite(p).all()
    assert (p[:, 0] != p[:, 1]).all()                                 # key vs no key: a value difference to restore
    span, distractor = restored(p, 2), restored(p, 3)
    assert abs(distractor) < abs(span)
    assert restored(np.array([[1.0, 0.0, 0.5, 0.0], [3.0, 1.0, 2.0, 1.0]]), 2) == pytest.approx(1.5 / 3)


def test_key_door_credit_span_share_is_a_fraction_of_the_context():
    from analysis.interp.keydoor_credit import key_door_credit
    from trajectories import load_dataset
    from trajectories.samples import SAMPLE_DIR

    c = key_door_credit(_shipped("keydoor-dt"), load_dataset(SAMPLE_DIR / "keydoor.npz"), target="value", method="saliency",
                        max_episodes=2)
    assert c.span_share.shape == (2,) and ((c.span_share > 0) & (c.span_share <= 1)).all()
    assert ((c.randomized_span_share > 0) & (c.randomized_span_share <= 1)).all()


def test_paired_errors_use_the_same_starts_for_every_model():
    from analysis.behaviour.predictions import error_by_horizon
    from trajectories import load_dataset
    from trajectories.samples import SAMPLE_DIR

    tt, dyn = _shipped("masked-pendulum-tt"), _shipped("masked-pendulum-dynamics")
    ds = load_dataset(SAMPLE_DIR / "masked-pendulum.npz")
    errs, starts = RP.paired_errors({"tt": (tt, 2), "none": (tt, 0), "dyn": (dyn, 0)}, ds, horizon=5, n_starts=6, seed=3)
    assert errs.shape == (6, 3) and len(set(starts)) == 6
    e_tt = error_by_horizon(tt, ds, 5, 6, 3, context=2)
    e_dyn = error_by_horizon(dyn, ds, 5, 6, 3, context=2)                # context only chooses the starts here
    assert (e_tt.starts == starts).all() and (e_dyn.starts == starts).all()
    np.testing.assert_allclose(errs[:, 0], e_tt.errors[:, 4], rtol=1e-5)
    np.testing.assert_allclose(errs[:, 2], e_dyn.errors[:, 4], rtol=1e-5)
    assert not np.allclose(errs[:, 0], errs[:, 1])                      # no history: another prediction


def test_quick_run_writes_the_report_with_the_design_schema(tmp_path):
    res = subprocess.run([sys.executable, "cli.py", "reproduce", "--quick", "--json", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
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
    # issue 15, item 9: the pooled fields of every finding, its pre-registered target and rule, and the verdict
    for f in out["findings"]:
        assert {"n_seeds", "per_seed", "estimate", "ci_low", "ci_high", "target", "rule", "reproduced", "claim", "metric",
                "split", "secondary", "verdict", "comparisons"} <= set(f), f["id"]
        # the verdict is the rule applied to the pooled values the JSON reports (recomputed here); None only when
        # a value the rule reads was not measured, and then the verdict says so
        spec = RP.registry().get(f["id"])
        values = {k: f[k] for k in ("estimate", "ci_low", "ci_high")}
        values.update({f"{m}_{k}": (f["secondary"][m] or {}).get(k) for m in spec.secondary for k in ("estimate", "ci_low", "ci_high")})
        assert f["reproduced"] is verdict(spec, values)[0], f["id"]
        assert f["verdict"] == {True: "reproduced", False: "not reproduced"}.get(f["reproduced"]) or (
            f["reproduced"] is None and f["verdict"].startswith("not measured: "))
        # issue 24: where it is measured, the paper's number (or why none), the interval's method, the hashes
        assert f["setting"] and set(f["paper_value"]) == {"value", "where", "reason"}
        assert f["paper_value"]["value"] is not None or f["paper_value"]["reason"]
        assert f["interval"]["method"] in ("stratified_bootstrap", "t_over_seeds", "within_seed")
        assert len(f["registration"]["code"]["current"]) == 64 and len(f["registration"]["recipes"]["current"]) == 64
    assert set(by_id["return_conditioning"]["secondary"]) == {"slope", "calibration_mae"}
    assert by_id["return_conditioning"]["n_seeds"] >= 1 and "0" in by_id["return_conditioning"]["per_seed"]
    ce = by_id["compounding_error"]
    assert ce["held_out"] is True and ce["paired"] is True and ce["secondary"]["history_minus_no_history_h10"]["n_seeds"] >= 1
    kd = by_id["key_to_door"]
    assert {"span_effect", "distractor_effect", "span_minus_distractor"} <= set(kd["patching"])
    assert {"estimate", "ci_low", "ci_high"} <= set(kd["patching"]["span_effect"])
    assert kd["reproduced"] is not None and "success_dt_minus_k1" in kd["secondary"]   # every value its rule reads measured
    assert out["findings"] and json.loads((tmp_path / "findings.json").read_text())["meta"]["registration"]["version"] >= 1
    assert ce["secondary"]["tt_floor"]["n_seeds"] >= 1 and ce["also_measured"]["tt100_floor"]["n_seeds"] >= 1
    md = (tmp_path / "report.md").read_text()
    assert md.count("**Verdict:**") == 4 and "no target was moved" in md
    assert "Targets pre-registered in findings.toml, last changed in commit " in md
    assert md.count("**Rule.** `") == 4 and md.count("| seed | ") == 4 and "**Pooled estimate.**" in md
    page = (tmp_path / "report.html").read_text()
    assert page.count("<img ") == 7 and "<table>" in page and "Targets pre-registered in findings.toml" in page
    figs = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert len(figs) == 14 and sum(n.endswith(".png") for n in figs) == 7
    for n in figs:
        data = (tmp_path / "figures" / n).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" if n.endswith(".png") else ET.fromstring(data).tag.endswith("svg")
    assert json.loads((tmp_path / "findings.json").read_text())["findings"] == out["findings"]


def test_retrain_runs_every_seed_from_the_recipes(tmp_path, monkeypatch):
    """--retrain --seeds 2 on recipes cut to a few steps: every finding per seed, agents trained here, each seed's
    raw values in OUT/seeds/seed<k>.json, the findings pooled over both seeds."""
    import cli
    from analysis.research import seed_runs
    from models import recipes

    short = {k: {**v, "steps": 3} for k, v in recipes.SAMPLE_AGENTS.items()}
    monkeypatch.setattr(recipes, "SAMPLE_AGENTS", short)
    trained = []
    real = seed_runs.train_recipe
    monkeypatch.setattr(seed_runs, "train_recipe", lambda name, seed, progress=True, ds=None, steps_scale=1.0:
                        trained.append((name, seed)) or real(name, seed, False, ds, steps_scale))
    args = cli.build_parser().parse_args(["reproduce", "--retrain", "--seeds", "2", "--quick", "--json", "--out", str(tmp_path)])
    out = cli.cmd_reproduce(args)
    assert len(out["per_seed"]) == 2 and all(len(run) == 4 for run in out["per_seed"])
    used = len(seed_runs.findings_agents())
    assert sorted({s for _, s in trained}) == [0, 1] and len(trained) == 2 * used   # every agent the findings use, per seed
    assert json.loads((tmp_path / "findings.json").read_text())["meta"]["agents"] == "agents retrained with seeds 0..1"
    assert all(f["n_seeds"] == 2 and set(f["per_seed"]) == {"0", "1"} for f in out["findings"])
    for k in (0, 1):
        doc = json.loads((tmp_path / "seeds" / f"seed{k}.json").read_text())
        assert doc["seed"] == k and doc["quick"] is True and "--retrain --seeds 2" in doc["command"]
        assert set(doc["findings"]) == {"return_conditioning", "context_pomdp", "key_to_door", "compounding_error"}
    assert "| pooled (2 seeds) |" in (tmp_path / "report.md").read_text()


def _stub_run_all(k20_by_seed):
    """A run_all whose one finding is the context finding on agents with known returns (K=20's by training seed)."""
    def run_all(load, datasets, seed=0, quick=False, log=print, training_seed=None):
        k = seed if training_seed is None else training_seed
        return [context_pomdp({"k20": StopAt(k20_by_seed[k], "dt"), "k1": StopAt(10, "dt"), "gru": StopAt(40, "gru"),
                               "mlp": StopAt(5, "mlp")}, episodes=2, seed=k)]
    return run_all


def test_seed_files_written_per_seed_and_pooled_from_docs_report_seeds(tmp_path, monkeypatch):
    """The retrain path writes OUT/seeds/seed<k>.json for each seed; a run without --retrain measures seed 0 live
    and pools it with the seed files committed in docs/report/seeds (seed 0's file is left out: measured live)."""
    import shutil

    import cli
    from analysis.research import pipeline, report, reproduce
    monkeypatch.setattr(reproduce, "run_all", _stub_run_all({0: 30, 1: 12, 2: 20}))
    monkeypatch.setattr(report, "write_figures", lambda figs, *a, **k: [])     # no Chromium
    pieces = pipeline.reproduce_pieces
    monkeypatch.setattr(pipeline, "reproduce_pieces", lambda options: ([0, 1], {}))  # "trained": the stub never loads
    out = tmp_path / "retrain"
    (out / "figures").mkdir(parents=True)
    assert cli.main(["reproduce", "--retrain", "--seeds", "2", "--json", "--out", str(out)]) == 0
    for k, ratio in ((0, 3.0), (1, 1.2)):
        doc = json.loads((out / "seeds" / f"seed{k}.json").read_text())
        assert doc["command"] == f"python cli.py reproduce --retrain --seeds 2 --out {out}" and doc["quick"] is False
        assert doc["findings"]["context_pomdp"]["raw"]["k20"] == {"resampled": [k * -18.0 + 30.0] * 2}
        assert doc["findings"]["context_pomdp"]["numbers"]["k20_over_k1"] == ratio
    f = json.loads((out / "findings.json").read_text())["findings"][0]
    assert (f["n_seeds"], f["per_seed"], f["estimate"]) == (2, {"0": 3.0, "1": 1.2}, pytest.approx(2.1))

    root = tmp_path / "root"
    (root / "docs" / "report" / "seeds").mkdir(parents=True)
    for k in (0, 1):
        shutil.copy(out / "seeds" / f"seed{k}.json", root / "docs" / "report" / "seeds")
    monkeypatch.setattr(pipeline, "ROOT", root)                               # the seed files
    monkeypatch.setattr(pipeline, "AGENT_DIR", root / "sample_data" / "agents")   # the shipped agents
    monkeypatch.setattr(pipeline, "reproduce_pieces", pieces)
    monkeypatch.setattr(reproduce, "run_all", _stub_run_all({0: 20}))       # the shipped seed 0, measured live
    shipped = tmp_path / "shipped"
    (shipped / "figures").mkdir(parents=True)
    assert cli.main(["reproduce", "--json", "--out", str(shipped)]) == 0
    doc = json.loads((shipped / "findings.json").read_text())
    f = doc["findings"][0]
    assert (f["n_seeds"], f["per_seed"], f["estimate"]) == (2, {"0": 2.0, "1": 1.2}, pytest.approx(1.6))
    assert f["reproduced"] is True and f["ci_low"] == 1.2               # 1.6 >= 1.5 and 1.2 > 1.0
    assert doc["meta"]["seeds"]["0"] == "measured here" and "seed1.json, made by `python cli.py reproduce" in doc["meta"]["seeds"]["1"]
    assert "pooled with seeds 1 from docs/report/seeds" in doc["meta"]["agents"]
    md = (shipped / "report.md").read_text()
    assert "| 0 | 2.000 | 8.000 |" in md and "| 1 | 1.200 | 8.000 |" in md and "| pooled (2 seeds) | 1.600 [1.200, 2.000]" in md
    # a --quick run does not pool full-length seed files
    assert cli.main(["reproduce", "--quick", "--json", "--out", str(shipped)]) == 0
    assert json.loads((shipped / "findings.json").read_text())["findings"][0]["n_seeds"] == 1


def _cartpole_dt(env_id="keep"):
    from dataclasses import replace

    from models import load_agent

    agent = load_agent(ROOT / "sample_data/agents/cartpole-dt")
    if env_id != "keep":
        agent.config = replace(agent.config, env_id=env_id)
    return agent


def test_env_per_agent_is_parsed_and_checked_with_the_agents_spaces():
    from analysis.research.reproduce import AGENTS
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
    variant = _agent_in_env("cartpole-dt", bare, {"cartpole-dt": "CartPole-v1"})
    assert variant.config.env_id == "CartPole-v1" and bare.config.env_id is None
    with pytest.raises(UserError, match=r"the environment Pendulum-v1 gives observations of shape \(3,\)"):
        _agent_in_env("cartpole-dt", bare, {"cartpole-dt": "Pendulum-v1"})


def test_reproduce_env_reaches_the_findings_and_bad_choices_stop_it_first(tmp_path, monkeypatch, capsys):
    """--env on a copy of the shipped agents where cartpole-dt names no environment; run_all replaced by a stub
    that records what load() gives (the findings themselves are tested above and in the quick run)."""
    import shutil

    import cli
    from analysis.research import pipeline, report, reproduce
    from models import save_agent

    root = tmp_path / "root"
    shutil.copytree(ROOT / "sample_data" / "agents", root / "sample_data" / "agents")
    save_agent(_cartpole_dt(env_id=None), root / "sample_data" / "agents" / "cartpole-dt")
    monkeypatch.setattr(pipeline, "AGENT_DIR", root / "sample_data" / "agents")   # where the shipped agents are
    seen = {}

    def run_all(load, datasets, seed=0, quick=False, log=print, training_seed=None):
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


def test_targets_beyond_the_data_known_answers_and_kept_out_of_the_in_range_metrics():
    """Issue 24, item 5: targets above the data's best are swept apart ("upper"); gain and slope have known answers,
    and the in-range Spearman, slope and calibration do not see them."""
    follows = {"targets": [0.0, 20.0, 40.0], "range": [0.0, 40.0], "returns": [np.full(2, v) for v in (0.0, 20.0, 40.0)],
               "upper": {"targets": [50.0, 60.0], "returns": [np.full(2, 50.0), np.full(2, 60.0)]}}
    flat = {**follows, "upper": {"targets": [50.0, 60.0], "returns": [np.full(2, 40.0), np.full(2, 40.0)]}}
    assert RP.agent_beyond_gain(follows) == pytest.approx(15 / 40) and RP.agent_beyond_slope(follows) == pytest.approx(1.0)
    assert RP.agent_beyond_gain(flat) == 0.0 and RP.agent_beyond_slope(flat) == pytest.approx(0.0, abs=1e-12)
    assert RP.agent_slope(flat) == pytest.approx(1.0) and RP.agent_calibration_mae(flat) == 0.0
    metrics = RP.finding_metrics("return_conditioning", {0: {"a": follows, "b": flat}})
    assert metrics["beyond_gain"]({"a": follows, "b": flat}) == pytest.approx(15 / 80)       # the agents' mean
    assert metrics["beyond_slope [b]"]({"a": follows, "b": flat}) == pytest.approx(0.0, abs=1e-12)
    legacy = {k: v for k, v in follows.items() if k != "upper"}
    assert "beyond_gain" not in RP.finding_metrics("return_conditioning", {0: {"a": legacy}})   # registration 1: none
    # ExactAgent earns its target up to the Counter env's 60-step limit = the data's best: beyond it, it saturates
    f = return_conditioning({"exact": ExactAgent()}, episodes=2, n_targets=5, beyond=(1.25, 1.5))
    row = f.numbers["agents"][0]
    assert row["beyond"]["targets"] == [75.0, 90.0] and row["beyond"]["achieved"] == [60.0, 60.0]
    assert row["beyond"]["gain"] == 0.0 and row["beyond"]["slope"] == 0.0 and row["targets"] == [0.0, 15.0, 30.0, 45.0, 60.0]
    assert f.numbers["spearman"] == 1.0 and f.pooled["beyond_gain"]["estimate"] == 0.0 and f.reproduced is True
    assert "beyond the data's best: targets [75.0, 90.0] achieved [60.0, 60.0]" in f.measured
