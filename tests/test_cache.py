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
    variant = with_inputs(agent, np.zeros(agent.obs_dim), np.ones(agent.obs_dim))
    raw = training_data(variant, ds)
    assert raw is not a and np.array_equal(raw.obs, ds.observations) and not np.array_equal(a.obs, ds.observations)


# ---- shared objects: what the one cache holds without copying (agents, datasets, normalised arrays) ------------
def test_a_shared_object_is_made_once_and_handed_out_as_it_is():
    objects = cache.SharedObjects()
    made = []

    def make():
        made.append(1)
        return {"weights": np.arange(3.0)}

    first = objects.get("agent", ("a", 1), make, kept=2)
    assert objects.get("agent", ("a", 1), make, kept=2) is first and made == [1]   # no copy, no second make
    objects.get("agent", ("b", 1), make, kept=2)
    objects.get("agent", ("c", 1), make, kept=2)                                    # past `kept`: "a" goes first
    assert not objects.holds("agent", ("a", 1)) and objects.holds("agent", ("c", 1)) and len(objects) == 2
    assert objects.get("agent", ("a", 1), make, kept=2) is not first and made == [1, 1, 1, 1]
    objects.get("dataset", ("a", 1), make, kept=1)                                  # kept counts per name
    assert len(objects) == 3


def test_concurrent_callers_of_one_key_wait_for_the_one_maker():
    objects, started, made = cache.SharedObjects(), threading.Event(), []

    def make():
        made.append(threading.get_ident())
        started.set()
        threading.Event().wait(0.2)   # long enough that the others arrive while it is made
        return object()

    out = []
    threads = [threading.Thread(target=lambda: out.append(objects.get("x", "k", make, kept=4))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len(out) == 4 and all(o is out[0] for o in out)


def test_shared_objects_follow_their_owners_and_expire():
    objects = cache.SharedObjects()
    objects.get("variant", "mine", object, kept=8, owner="session-a")
    objects.get("variant", "both", object, kept=8, owner="session-a")
    objects.get("variant", "both", object, kept=8, owner="session-b")
    objects.get("shipped", "agent", object, kept=8)                                 # SHARED: stays
    assert objects.release("session-a") == 1
    assert not objects.holds("variant", "mine") and objects.holds("variant", "both")
    assert objects.purge(lambda o: False) == 1 and len(objects) == 1 and objects.holds("shipped", "agent")
    first = objects.get("walk", "dir", object, kept=8, ttl=60.0)
    assert objects.get("walk", "dir", object, kept=8, ttl=60.0) is first
    assert objects.get("walk", "dir", object, kept=8, ttl=0.0) is not first       # expired: made again


def test_release_drops_a_sessions_results_and_objects_together(pair):
    agent, ds = pair
    cache.OBJECTS.clear()
    with context(owner="session-x"):
        cached("thing", lambda: 1, agent, ds)
        cache.shared("variant", "v", object, kept=8)
    assert cache.release("session-x") == 2 and not cache.OBJECTS.holds("variant", "v")


def test_normalised_data_is_one_shared_read_only_object(pair):
    from analysis.core.inputs import training_data

    agent, ds = pair
    cache.OBJECTS.clear()
    data = training_data(agent, ds)
    assert training_data(copy.deepcopy(agent), ds) is data                         # same content, same object
    with pytest.raises(ValueError):
        data.obs[0, 0] = 1.0                                                         # no session can write it


def test_on_disk_survives_a_restart_and_recomputes_a_damaged_file(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.arange(4.0)

    save = lambda v, p: np.savez(p, v=v)   # noqa: E731
    load = lambda p: np.load(p, allow_pickle=False)["v"]   # noqa: E731
    assert cache.on_disk(tmp_path, "k", compute, save, load).tolist() == [0, 1, 2, 3]
    assert cache.on_disk(tmp_path, "k", compute, save, load).tolist() == [0, 1, 2, 3] and calls == [1]
    (tmp_path / "k.npz").write_bytes(b"not an npz")
    assert cache.on_disk(tmp_path, "k", compute, save, load).tolist() == [0, 1, 2, 3] and calls == [1, 1]
    cache.on_disk(tmp_path, "k", compute, save, load, use=False)
    assert calls == [1, 1, 1]
