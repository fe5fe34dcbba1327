"""analysis/research/key_to_door_paper.py and delayed_reward.py (issue 24, items 3 and 4): METRICS on synthetic raw
values with known answers, and `measure` end to end on tiny agents (quick mode: shapes, keys, and numbers that come
from the agents it was given; no assertion on success levels, which are not a result here)."""
import importlib.util

import numpy as np
import pytest

from analysis.research import delayed_reward as DR
from analysis.research import key_to_door_paper as KP
from analysis.research.reproduce import NotProvided

HAS_VALUE_AGENTS = importlib.util.find_spec("models.value_agents") is not None


def _kp_raw():
    ones, zeros = np.ones(10), np.zeros(10)
    half = np.r_[np.ones(5), np.zeros(5)]
    return {"success": {"1k": {"dt": np.r_[np.ones(7), np.zeros(3)], "bc": zeros, "pbc": half, "cql": np.r_[1.0, np.zeros(9)]},
                        "10k": {"dt": ones, "bc": np.r_[1.0, np.zeros(3)], "pbc": ones, "cql": zeros}},
            "cue": {"full": np.r_[np.ones(8), np.zeros(2)], "k1": np.r_[np.ones(4), np.zeros(6)], "cql": zeros},
            "data_success": {"1k": 0.043, "10k": 0.0431, "cue": 0.0368}}


def test_key_to_door_paper_metrics_known_answers():
    raw, M = _kp_raw(), KP.METRICS
    assert M["dt_success_1k"](raw) == pytest.approx(0.7) and M["pbc_success_1k"](raw) == pytest.approx(0.5)
    assert M["cql_success_1k"](raw) == pytest.approx(0.1) and M["bc_success_10k"](raw) == pytest.approx(0.25)
    assert M["dt_minus_bc_1k"](raw) == pytest.approx(0.7) and M["dt_minus_pbc_1k"](raw) == pytest.approx(0.2)
    assert M["dt_minus_cql_10k"](raw) == pytest.approx(1.0) and M["dt_minus_pbc_10k"](raw) == pytest.approx(0.0)
    assert M["cue_full_success"](raw) == pytest.approx(0.8) and M["cue_k1_success"](raw) == pytest.approx(0.4)
    assert M["cue_full_minus_k1"](raw) == pytest.approx(0.4) and M["cue_k1_over_full"](raw) == pytest.approx(0.5)
    assert M["data_success_1k"](raw) == 0.043 and M["data_success_cue"](raw) == 0.0368
    raw["cue"]["full"] = np.zeros(4)
    assert np.isnan(M["cue_k1_over_full"](raw))
    # every metric says which raw arrays it reads (not_measured is keyed on them)
    assert KP.metric_needs("dt_minus_cql_1k") == [("success", "1k", "dt"), ("success", "1k", "cql")]
    assert KP.metric_needs("cue_k1_over_full") == [("cue", "full"), ("cue", "k1")]
    assert {n for m in KP.METRICS for n, *_ in KP.metric_needs(m)} == {"success", "cue", "data_success"}


def _dr_raw():
    return {"returns": {"original": {"dt": np.array([500.0, 400.0]), "cql": np.array([500.0, 500.0])},
                        "delayed": {"dt": np.array([450.0, 450.0]), "cql": np.array([50.0, 150.0])}}, "max_return": 500.0}


def test_delayed_reward_metrics_known_answers():
    raw, M = _dr_raw(), DR.METRICS
    assert M["dt_return_original"](raw) == 450 and M["cql_return_delayed"](raw) == 100
    assert M["dt_score_original"](raw) == pytest.approx(0.9) and M["cql_score_delayed"](raw) == pytest.approx(0.2)
    assert M["dt_kept"](raw) == pytest.approx(1.0) and M["cql_kept"](raw) == pytest.approx(0.2)
    assert M["dt_drop"](raw) == pytest.approx(0.0) and M["cql_drop"](raw) == pytest.approx(0.8)
    assert M["dt_minus_cql_delayed"](raw) == pytest.approx(0.7) and M["cql_drop_minus_dt_drop"](raw) == pytest.approx(0.8)
    raw["returns"]["original"]["cql"] = np.zeros(2)
    assert np.isnan(M["cql_kept"](raw))
    assert DR.metric_needs("cql_kept") == [("original", "cql"), ("delayed", "cql")]


# ---- measure, end to end on tiny agents ------------------------------------------------------------------------------
def _tiny_world(names, episodes):
    """load(name): the recipe trained for a few steps on the first `episodes` of its data (recorded in `trained`); CQL
    recipes without models/value_agents.py are NotProvided, naming the module."""
    from analysis.research.seed_runs import train_recipe
    from envs.behaviour import DATA_RECIPES, recipe_dataset
    from models.recipes import all_recipes, recipe_data

    def datasets(name):
        return recipe_dataset(name, episodes=episodes) if name in DATA_RECIPES else recipe_data(name).select(range(20))

    trained = {}

    def load(name):
        assert name in names, name
        r = all_recipes()[name]
        if r["kind"] == "q" and not HAS_VALUE_AGENTS:
            raise NotProvided(f"{name}: models/value_agents.py (kind 'q') is not in this tree")
        trained[name] = train_recipe(name, 0, progress=False, ds=datasets(r["data"]), steps_scale=3 / r["steps"])
        return trained[name]
    return load, datasets, trained


def test_key_to_door_paper_measure_quick_end_to_end():
    from analysis.behaviour.evaluate import evaluate

    names = {n for by in KP.AGENTS.values() for n in by.values()} | set(KP.CUE_AGENTS.values())
    load, datasets, trained = _tiny_world(names, 200)
    f = KP.measure(load, datasets, seed=3, quick=True)
    assert f.id == "key_to_door_paper" and f.seed == 3 and f.reproduced is None
    assert f.numbers["behaviour"] == "uniform random" and f.numbers["n_episodes"] == [1000, 10000]
    methods = ["dt", "bc", "pbc"] + (["cql"] if HAS_VALUE_AGENTS else [])
    for size in KP.SIZES:
        assert sorted(f.raw["success"][size]) == sorted(methods)
        for m in methods:
            x = f.raw["success"][size][m]
            assert x.shape == (KP.QUICK_EPISODES,) and set(np.unique(x)) <= {0.0, 1.0}
            assert f.numbers["success"][size][m]["agent"] == KP.AGENTS[size][m]
    assert sorted(f.raw["cue"]) == sorted(["full", "k1"] + (["cql"] if HAS_VALUE_AGENTS else []))
    # the numbers are the trained agents' own: the 10K DT re-evaluated on the same resets gives the same episodes
    again = evaluate(trained["keydoor-random-10k-dt"], [1.0], episodes=KP.QUICK_EPISODES, seed=3, progress=False)[0]
    np.testing.assert_array_equal(f.raw["success"]["10k"]["dt"], (np.asarray(again["returns"]) > 0.5).astype(float))
    assert f.numbers["success"]["10k"]["dt"]["success"] == pytest.approx(f.raw["success"]["10k"]["dt"].mean(), abs=5e-4)
    # %BC trained on the successful episodes only: its checkpoint records fewer episodes than BC's
    assert trained["keydoor-random-1k-pbc"].config.dataset["n_episodes"] < trained["keydoor-random-1k-bc"].config.dataset["n_episodes"]
    assert f.raw["data_success"]["1k"] == pytest.approx(np.mean(datasets("keydoor-random-1k").episode_returns > 0))
    assert f.numbers["data"]["1k"]["policy"] == "uniform-random"
    measurable = {m for m in KP.METRICS if m not in f.not_measured}
    for m in measurable:
        assert np.isfinite(KP.METRICS[m](f.raw)) or m == "cue_k1_over_full"
    if not HAS_VALUE_AGENTS:
        assert set(f.not_measured) == {m for m in KP.METRICS if "cql" in m}
        assert all("models/value_agents.py" in why for why in f.not_measured.values())
    assert set(f.figures) == {"key_to_door_paper", "key_to_door_cue"}


def test_delayed_reward_measure_quick_end_to_end():
    names = {n for by in DR.AGENTS.values() for n in by.values()}
    load, datasets, trained = _tiny_world(names, 20)
    f = DR.measure(load, datasets, seed=1, quick=True)
    assert f.id == "delayed_reward" and f.raw["max_return"] == 500.0
    assert f.numbers["data"]["delayed"]["env_id"] == "seqlens/DelayedCartPole-v1"
    assert f.numbers["data"]["delayed"]["reward_steps"] == 20 < f.numbers["data"]["original"]["reward_steps"]
    for v in DR.VARIANTS:
        assert f.raw["returns"][v]["dt"].shape == (DR.QUICK_EPISODES,)
    # each DT is evaluated in the environment of its data: the delayed one where the reward comes at the end
    assert f.numbers["returns"]["delayed"]["dt"]["env_id"] == "seqlens/DelayedCartPole-v1"
    assert f.numbers["returns"]["original"]["dt"]["env_id"] == "CartPole-v1"
    assert trained["cartpole-delayed-dt"].config.env_id == "seqlens/DelayedCartPole-v1"
    if not HAS_VALUE_AGENTS:
        assert set(f.not_measured) == {m for m in DR.METRICS if "cql" in m}
    assert np.isfinite(DR.METRICS["dt_kept"](f.raw))


@pytest.mark.skipif(not HAS_VALUE_AGENTS, reason="needs models/value_agents.py (kind 'q', CQL), built in another branch")
def test_cql_recipes_train_a_q_agent():
    from analysis.research.seed_runs import train_recipe
    from envs.behaviour import recipe_dataset

    agent = train_recipe("keydoor-random-1k-cql", 0, progress=False, ds=recipe_dataset("keydoor-random-1k", episodes=100),
                         steps_scale=3 / 3000)
    assert agent.kind == "q" and agent.has("q_values")


def test_paper_rows_set_every_table_6_number_beside_its_metric():
    from analysis.research.papers import paper_rows
    from analysis.research.reproduce import Finding

    f = Finding("key_to_door_paper", "t", "c", "m", None, {})
    f.pooled = {"pbc_success_10k": {"estimate": 0.9, "ci_low": 0.8, "ci_high": 0.95, "n_seeds": 5}}
    rows = paper_rows(f)
    assert len(rows) == 10 and all(r["ours_metric"] in KP.METRICS for r in rows)
    by = {r["ours_metric"]: r for r in rows}
    assert by["dt_success_1k"]["paper_value"] == 0.718 and by["cql_success_10k"]["paper_value"] == 0.133
    assert by["pbc_success_10k"]["paper_value"] == 0.951 and by["pbc_success_10k"]["ours"]["estimate"] == 0.9
    assert by["data_success_1k"]["paper_value"] == 0.031 and by["bc_success_1k"]["ours"] is None
