"""The one cache (analysis/core/cache.py): content keys, copies, progress through the call, owners, byte bound."""
import copy
import threading

import numpy as np
import pytest
import torch

from analysis.core import cache
from analysis.core.cache import CACHE, cached, context, report
from models import load_agent
from trajectories import load_dataset
from trajectories.samples import sample_datasets

from conftest import ROOT


@pytest.fixture
def pair():
    CACHE.clear()
    return load_agent(ROOT / "sample_data/agents/cartpole-dt"), load_dataset(sample_datasets()["cartpole"])


def test_computes_once_per_content_and_returns_copies(pair):
    agent, ds = pair
    calls = []

    def compute():
        calls.append(1)
        return {"x": np.arange(3.0)}

    first = cached("thing", compute, agent, ds, k=1)
    first["x"][0] = 99.0                                   # a caller's copy: the cache keeps its own
    again = cached("thing", compute, copy.deepcopy(agent), ds, k=1)   # same content, another object
    assert len(calls) == 1 and again["x"][0] == 0.0
    cached("thing", compute, agent, ds, k=2)               # other parameters
    other = copy.deepcopy(agent)
    with torch.no_grad():
        other.embed_state.weight.add_(1.0)
    cached("thing", compute, other, ds, k=1)               # other weights
    assert len(calls) == 3
    assert cached("thing", compute, agent, ds, use_cache=False, k=1) and len(calls) == 4


def test_progress_travels_with_the_call_and_a_hit_reports_done(pair):
    agent, ds = pair
    seen = []

    def compute():
        report(0.5, "half")
        return 1

    with context(progress=lambda f, m: seen.append((f, m))):
        cached("p", compute, agent, ds)
        cached("p", compute, agent, ds)
    report(0.3, "nobody listens")                          # outside a context: no error, nothing recorded
    assert seen == [(0.5, "half"), (1.0, "cached")]


def test_progress_contexts_of_two_threads_stay_apart(pair):
    agent, ds = pair
    seen = {0: [], 1: []}
    barrier = threading.Barrier(2)

    def work(i):
        with context(progress=lambda f, m: seen[i].append(m)):
            barrier.wait()
            report(0.5, f"thread {i}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {0: ["thread 0"], 1: ["thread 1"]}


def test_owned_values_leave_with_their_session(pair):
    agent, ds = pair
    with context(owner="session-a"):
        cached("private", lambda: 1, agent, ds)
    cached("shared", lambda: 2, agent, ds)
    assert len(CACHE) == 2
    assert CACHE.release("session-a") == 1 and len(CACHE) == 1
    assert cache.key("shared", agent, ds) in CACHE


def test_prepared_inputs_are_shared_read_only_and_keyed_on_the_normalisation():
    """analysis.core.inputs.training_data keeps recent (dataset, normalisation) pairs for every session: the same content
    gives the same object, whose arrays no caller can write; other statistics give their own."""
    from analysis.core.inputs import training_data
    from models.env_choice import with_inputs

    agent = load_agent(ROOT / "sample_data/agents/cartpole-dt")
    ds = load_dataset(sample_datasets()["cartpole"])
    a, b = training_data(agent, ds), training_data(load_agent(ROOT / "sample_data/agents/cartpole-dt"), ds)
    assert a is b
    for arr in (a.obs, a.rtg, a.timesteps):
        with pytest.raises(ValueError):
            arr[0] = 0
    twin = with_inputs(agent, np.zeros(agent.obs_dim), np.ones(agent.obs_dim))
    raw = training_data(twin, ds)
    assert raw is not a and np.array_equal(raw.obs, ds.observations) and not np.array_equal(a.obs, ds.observations)
