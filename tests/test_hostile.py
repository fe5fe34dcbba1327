"""Uploads from strangers (SECURITY.md): every hostile file is made by hand here or in bench/hostile_*.py,
and each is one sentence through the upload widget (AppTest) with the session keeping what it had, and no
secret file content anywhere. Reader- and checkpoint-level refusals (and their CLI sentences) are in
tests/test_hostile_data.py and tests/test_hostile_agents.py; this file covers the app: uploads, caches,
sessions, shared agents and what is sent to the browser."""
from __future__ import annotations

import copy
import gc
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from analysis.core.identity import agent_key, stamp_agent
from models import load_agent, save_agent
from trajectories import Dataset, load_dataset, save_dataset
from trajectories.samples import sample_datasets

from conftest import page_texts, zip_agent_dir

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "sample_data" / "agents"


def _app(page: str = "app.py") -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at




def _chart_bytes(at: AppTest) -> int:
    return sum(len(c.proto.spec) for c in at.get("plotly_chart"))


# ---- every hostile file through the upload widget ----------------------------------------------------------
def _hostile(kind: str, tmp_path_factory):
    if kind == "data":
        from bench.hostile_data import hostile_dataset_files as make
    else:
        from bench.hostile_agents import hostile_agent_files as make
    return [h for h in make(tmp_path_factory.mktemp(kind)) if Path(h["path"]).is_file()]


@pytest.fixture(scope="module")
def hostile_data(tmp_path_factory):
    return _hostile("data", tmp_path_factory)


@pytest.fixture(scope="module")
def hostile_agents(tmp_path_factory):
    return _hostile("agents", tmp_path_factory)


@pytest.mark.parametrize("kind", ["data", "agents"])
def test_every_hostile_upload_is_one_sentence_and_the_session_keeps_its_choice(kind, hostile_data, hostile_agents):
    files = hostile_data if kind == "data" else hostile_agents
    assert len(files) >= 10
    key, select = ("upload_dataset", "dataset") if kind == "data" else ("upload_agent", "agent")
    at = _app()
    options = at.selectbox(key=f"{select}_select").options
    at.selectbox(key=f"{select}_select").select(options[1]).run()
    before = at.session_state[select]
    from bench.hostile_agents import ACCEPTED

    for h in files:
        path = Path(h["path"])
        at.file_uploader(key=key).upload(path.name, path.read_bytes(), "application/octet-stream").run()
        assert not at.exception, (h["name"], at.exception)
        if h["name"] in ACCEPTED:   # loads, saying what it ignored; nothing of the extra member is unpacked
            assert not at.error and any(h["expect"] in s.value.lower() for s in at.success), (h["name"], at.success)
            at.selectbox(key=f"{select}_select").select(before).run()
            continue
        errors = [e.value for e in at.error]
        assert len(errors) == 1, (h["name"], errors)
        assert "\n" not in errors[0] and h["expect"] in errors[0].lower(), (h["name"], errors[0])
        assert at.session_state[select] == before, h["name"]
        assert f"upload: {path.name}" not in at.selectbox(key=f"{select}_select").options
        if h.get("secret"):   # neither as text on the page nor as the raw bytes of any array the session holds
            text = page_texts(at)
            for needle in (h["secret"], h["secret"][:12]):
                assert needle.decode(errors="ignore") not in text, h["name"]
            for ds in at.session_state["uploaded_datasets"].values() if "uploaded_datasets" in at.session_state else []:
                raw = b"".join(getattr(ds, k).tobytes() for k in ("observations", "actions", "rewards"))
                assert h["secret"][:8] not in raw, h["name"]


# ---- item 5: caches keyed on content, not on id() -------------------------------------------------------------
def _pair(agent, name="upload: agent.zip"):
    from ui.page import Selection

    ds = load_dataset(sample_datasets()["cartpole"])
    return Selection(name, agent, "cartpole", ds)


def test_figure_keys_follow_content_not_object_ids():
    a = load_agent(AGENTS / "cartpole-dt")
    b = copy.deepcopy(a)
    with torch.no_grad():
        b.embed_state.weight.add_(0.5)
    assert _pair(a).key != _pair(b).key                  # same name, different weights
    assert _pair(a).key == _pair(copy.deepcopy(a)).key   # same weights, another object (another id)
    # Python hands a freed object's id to the next one: the key must not follow it
    seen, reused = {}, 0
    for i in range(30):
        agent = load_agent(AGENTS / "cartpole-dt")
        with torch.no_grad():
            agent.embed_state.weight.add_(i)
        if id(agent) in seen:
            reused += 1
            assert seen[id(agent)] != _pair(agent).key
        seen[id(agent)] = _pair(agent).key
        del agent
        gc.collect()
    assert len(set(seen.values())) == len(seen)


def test_a_stamped_key_is_the_hash_of_the_weights():
    a = load_agent(AGENTS / "cartpole-dt")
    fresh = agent_key(a)
    assert agent_key(stamp_agent(a)) == fresh == agent_key(copy.deepcopy(a))


def test_two_sessions_uploading_agent_zips_of_one_name_see_their_own_figures(tmp_path):
    a = load_agent(AGENTS / "cartpole-dt")
    b = copy.deepcopy(a)
    with torch.no_grad():
        for p in b.parameters():
            p.mul_(-1.0)
    specs = []
    for i, agent in enumerate((a, b)):
        d = tmp_path / f"agent{i}"
        save_agent(agent, d)
        at = _app()
        at.file_uploader(key="upload_agent").upload("agent.zip", zip_agent_dir(d), "application/zip").run()
        assert not at.exception and at.session_state["agent"] == "upload: agent.zip"
        at.switch_page("views/2_Attention.py").run()
        assert not at.exception, at.exception
        specs.append([c.proto.spec for c in at.get("plotly_chart")])
    assert specs[0] and specs[1] and specs[0] != specs[1]


# ---- item 6: analyses never mutate a shared agent ----------------------------------------------------------------
def _hooks(agent) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in agent.modules())


@pytest.mark.parametrize("name,data", [("pendulum-tt", "pendulum"), ("cartpole-dt", "cartpole")])
def test_two_threads_on_one_agent_equal_serial_results(name, data):
    from analysis.interp.attention import window_attention
    from analysis.interp.embeddings import hidden_states

    agent = load_agent(AGENTS / name)
    ds = load_dataset(sample_datasets()[data])
    steps = [np.arange(0, 400, 2), np.arange(1, 300, 3)]
    serial = [hidden_states(agent, ds, s, batch_size=16) for s in steps]
    out, errors = [None, None], []

    def work(i):
        try:
            for _ in range(3):
                out[i] = hidden_states(agent, ds, steps[i], batch_size=16)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for got, want in zip(out, serial):
        np.testing.assert_array_equal(got, want)
    assert _hooks(agent) == 0
    if name == "cartpole-dt":   # a second analysis beside the first
        ref = window_attention(agent, ds, 0, 10)
        res = []
        t = threading.Thread(target=lambda: res.append(window_attention(agent, ds, 0, 10)))
        t.start()
        mid = hidden_states(agent, ds, steps[0], batch_size=16)
        t.join()
        np.testing.assert_array_equal(mid, serial[0])
        np.testing.assert_array_equal(res[0].weights, ref.weights)


# ---- item 9: bounded caches ---------------------------------------------------------------------------------------
def test_figure_cache_is_bounded_by_bytes_and_forgets_ended_sessions():
    from analysis.core.cache import SHARED, ResultCache

    limit = [10_000]
    cache = ResultCache(lambda: limit[0])
    blob = np.zeros(1000)   # ~8 KB pickled
    cache.put("shared", blob, SHARED)
    cache.put("a", blob, "session-a")
    assert "shared" not in cache and "a" in cache and cache.nbytes <= 10_000
    limit[0] = 100_000
    cache.put("shared", blob, SHARED)
    cache.put("b", blob, "session-b")
    cache.get("b", "session-a")              # a second session uses b's figure too
    assert cache.release("session-b") == 0 and "b" in cache
    assert cache.release("session-a") == 2   # a and b had no owner left
    assert len(cache) == 1 and "shared" in cache
    got = cache.get("shared")
    got[0] = 5.0                              # a caller's copy: the cached figure stays as it was
    assert cache.get("shared")[0] == 0.0
    cache.put("huge", np.zeros(100_000), SHARED)   # bigger than the whole cache: not kept
    assert "huge" not in cache


def test_a_session_that_ends_takes_its_upload_figures_with_it():
    from analysis.core.cache import CACHE

    CACHE.clear()
    at = _app()
    rows = [{"episode": e, "step": t, "obs_0": t * 0.1, "obs_1": 0.2, "obs_2": -t * 0.1, "obs_3": 0.0, "action": t % 2,
             "reward": 1.0} for e in range(3) for t in range(30)]
    at.file_uploader(key="upload_dataset").upload("mine.csv", pd.DataFrame(rows).to_csv(index=False).encode(), "text/csv").run()
    at.switch_page("views/2_Attention.py").run()
    assert not at.exception, at.exception
    private = [k for k in CACHE.keys() if "mine.csv" in k]
    assert private
    del at
    gc.collect()
    assert not any("mine.csv" in k for k in CACHE.keys())


@pytest.mark.parametrize("var,value", [("SEQLENS_SESSION_UPLOADS", "2"),
                                       ("SEQLENS_SESSION_UPLOAD_BYTES", "120")])   # each upload holds 54 bytes
def test_session_upload_cap_drops_the_oldest_with_a_note(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    at = _app()
    csv = "episode,obs_0,action,reward\n0,0.1,0,1\n0,0.2,1,1\n1,0.3,0,1\n"
    for i in range(3):
        at.file_uploader(key="upload_dataset").upload(f"d{i}.csv", csv.encode(), "text/csv").run()
        assert not at.exception
    options = at.selectbox(key="dataset_select").options
    assert "upload: d0.csv" not in options and {"upload: d1.csv", "upload: d2.csv"} <= set(options)
    assert "Removed the oldest upload (d0.csv)" in at.success[0].value
    assert at.session_state["dataset"] == "upload: d2.csv"


def test_embedding_disk_cache_is_pruned_least_recently_used_first(tmp_path):
    import os

    from analysis.core.cache import prune_disk

    for i in range(5):
        f = tmp_path / f"{i}.npz"
        f.write_bytes(b"x" * 1000)
        os.utime(f, (1000 + i, 1000 + i))
    os.utime(tmp_path / "0.npz", (5000, 5000))   # used most recently
    assert prune_disk(tmp_path, 2500) == 3000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.npz", "4.npz"]


# ---- item 10: one long episode stays small in the browser ------------------------------------------------------
def test_a_million_step_episode_sends_little_chart_data(tmp_path):
    n = 1_000_000
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    obs[123_457, 0] = 50.0   # a spike the thinned line must keep
    ds = Dataset(obs, rng.integers(0, 2, n), rng.normal(size=n).astype(np.float32), np.zeros(n, bool),
                 np.zeros(n, bool), np.array([0]), source="long")
    path = tmp_path / "long.npz"
    save_dataset(ds, path)
    at = _app("views/1_Dataset.py")
    at.file_uploader(key="upload_dataset").upload("long.npz", path.read_bytes(), "application/octet-stream").run()
    assert not at.exception, at.exception
    assert at.session_state["dataset"] == "upload: long.npz"
    sent = _chart_bytes(at)
    assert sent < 2_000_000, sent        # was ~79 MB
    assert sum("every point" in c.value for c in at.caption) == 3   # observations, actions, reward + RTG
    from analysis.publish.figures import episode_signals
    from analysis.publish.figures.downsample import thin_figure

    thinned, longest = thin_figure(episode_signals(obs, ["a", "b"], "t", "v"))
    assert longest == n and max(float(np.max(tr.y)) for tr in thinned.data) == 50.0


def test_thinning_keeps_every_peak_and_both_ends():
    from analysis.publish.figures.downsample import minmax_indices

    y = np.random.default_rng(1).normal(size=100_003)
    idx = minmax_indices(y, 1000)
    assert len(idx) <= 1002 and idx[0] == 0 and idx[-1] == len(y) - 1
    size = -(-len(y) // 500)
    for b in range(0, len(y), size):   # each bucket's extremes are kept
        chunk = y[b:b + size]
        assert b + chunk.argmax() in idx and b + chunk.argmin() in idx
    assert list(minmax_indices(y[:50], 1000)) == list(range(50))


# ---- item 8: tracebacks reachable from pages and the CLI ----------------------------------------------------------
def test_nan_target_returns_are_a_sentence_on_the_page_and_in_the_cli():
    import subprocess

    at = AppTest.from_file(str(ROOT / "views/3_Return_conditioning.py"), default_timeout=120)
    at.run()
    at.text_input(key="sweep_targets").input("100, nan").run()
    assert not at.exception and any("finite" in e.value for e in at.error)
    for bad in ("nan", "inf,100"):
        r = subprocess.run([sys.executable, "cli.py", "evaluate", "--agent", str(AGENTS / "cartpole-dt"),
                            "--target-returns", bad, "--episodes", "1"], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "finite" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "cli.py", "export", "--agent", str(AGENTS / "cartpole-dt"), "--figure",
                        "rtg_shift_replay", "--param", "shifts=[NaN]", "--out", "/tmp/x.png"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "finite" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_one_step_dataset_on_the_embeddings_page_is_a_sentence():
    at = _app()
    at.file_uploader(key="upload_dataset").upload("one.csv", b"obs_0,obs_1,obs_2,obs_3,action,reward\n0,0,0,0,1,1\n",
                                                  "text/csv").run()
    assert at.session_state["dataset"] == "upload: one.csv"
    at.switch_page("views/6_Embeddings.py").run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["one.csv has 1 step; a PCA embedding needs at least 3."]
