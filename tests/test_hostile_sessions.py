"""Strangers, round two (issue 26), the session items: sessions never see each other's names through a shared
cache entry (content keys cover everything a page shows), and text from URLs and files is never Markdown (one
helper, ui/text.md_escape, in every st.* message that quotes a user-controlled value)."""
from __future__ import annotations

import ast
import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from analysis.identity import agent_key, dataset_key, stamp_agent, stamp_dataset
from models import load_agent
from trajectories import Dataset, load_dataset

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "sample_data" / "agents"


def _texts(at: AppTest) -> str:
    """Everything the page would send: every element's protobuf as text (values, specs, messages)."""
    out, stack = [], [at._tree]
    while stack:
        node = stack.pop()
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            stack.extend(children.values())
    return "\n".join(out)


# ---- item 4: content keys cover everything a page shows ------------------------------------------------------
def _csv(names: list[str]) -> bytes:
    """Three 30-step CartPole-sized episodes; only the observation column names vary between calls."""
    rows = [{"episode": e, "step": t, **{f"obs_{n}": v for n, v in zip(names, (t * 0.1, 0.2, -t * 0.05, 0.01 * e))},
             "action": t % 2, "reward": 1.0} for e in range(3) for t in range(30)]
    return pd.DataFrame(rows).to_csv(index=False).encode()


SECRET = ["cartsecretalpha", "polesecretbeta", "anglesecretgamma", "spinsecretdelta"]
PUBLIC = ["cartpublic", "polepublic", "anglepublic", "spinpublic"]


def _session(names: list[str], page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    at.file_uploader(key="upload_dataset").upload("data.csv", _csv(names), "text/csv").run()
    assert not at.exception and at.session_state["dataset"] == "upload: data.csv", at.exception
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("page", ["views/4_Credit_assignment.py", "views/9_Episode_player.py"])
def test_two_sessions_uploading_the_same_arrays_under_other_names_see_their_own_names(page):
    from analysis.cache import CACHE

    CACHE.clear()
    a = _session(SECRET, page)
    assert SECRET[1] in _texts(a)               # the page shows the feature names (else this test shows nothing)
    b = _session(PUBLIC, page)                  # the same arrays, the same file name, other column names
    shown = _texts(b)
    assert PUBLIC[1] in shown
    assert not any(s in shown for s in SECRET), "session B was shown session A's names"
    del a, b


def _ds(**change) -> Dataset:
    rng = np.random.default_rng(3)
    n = 12
    base = dict(observations=rng.normal(size=(n, 2)).astype(np.float32), actions=rng.integers(0, 2, n),
                rewards=np.ones(n, np.float32), terminated=np.eye(1, n, 5, dtype=bool)[0], truncated=np.zeros(n, bool),
                episode_starts=np.array([0, 6]), obs_names=["x", "v"], act_names=None, n_actions=None,
                env_id="CartPole-v1", source="a.csv", metadata={"format": "csv"}, infos={})
    return Dataset(**{**base, **change})


@pytest.mark.parametrize("change", [
    {"obs_names": ["x", "secret"]}, {"act_names": ["push"]}, {"n_actions": 3}, {"env_id": "Acrobot-v1"},
    {"env_id": None}, {"source": "b.csv"}, {"metadata": {"format": "csv", "note": "secret"}},
    {"metadata": {"format": "csv", "action_labels": ["left", "right"]}},
    {"metadata": {"format": "csv", "episode_ids": np.array([0, 1])}},
    {"infos": {"qpos": np.zeros((12, 2)), "qvel": np.zeros((12, 2))}},
], ids=lambda c: next(iter(c)))
def test_dataset_key_differs_when_anything_shown_differs_and_the_training_fingerprint_does_not(change):
    base, other = _ds(), _ds(**change)
    assert dataset_key(other) != dataset_key(base)
    assert dataset_key(stamp_dataset(_ds(**change))) == dataset_key(other) != dataset_key(stamp_dataset(_ds()))
    assert other.fingerprint() == base.fingerprint()   # what agents store of their training data: arrays only


def test_dataset_key_is_equal_for_equal_content_and_sees_arrays_inside_metadata():
    assert dataset_key(_ds()) == dataset_key(_ds()) == dataset_key(stamp_dataset(_ds()))
    assert dataset_key(_ds(metadata={"b": 1, "a": [1, 2]})) == dataset_key(_ds(metadata={"a": [1, 2], "b": 1}))
    # numpy prints long arrays with "...": two arrays that print alike must still key apart
    big = np.arange(5000)
    assert str(big) == str(big + np.eye(1, 5000, 2500, dtype=int)[0])
    assert dataset_key(_ds(metadata={"ids": big})) != dataset_key(_ds(metadata={"ids": big + np.eye(1, 5000, 2500, dtype=int)[0]}))
    # 1 and "1" and 1.0 are shown differently
    keys = {dataset_key(_ds(metadata={"v": v})) for v in (1, "1", 1.0, True, None, [1], (1,))}
    assert len(keys) >= 6


def test_datasets_read_from_files_differing_only_in_names_key_apart(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "data.csv").write_bytes(_csv(SECRET))
    (tmp_path / "b" / "data.csv").write_bytes(_csv(PUBLIC))
    a, b = (stamp_dataset(load_dataset(tmp_path / d / "data.csv", display_name="data.csv")) for d in "ab")
    assert a.source == b.source and a.fingerprint() == b.fingerprint()
    assert dataset_key(a) != dataset_key(b)


def test_agent_key_covers_what_pages_show_of_an_agent():
    a = load_agent(AGENTS / "cartpole-dt").eval()
    key = agent_key(a)
    for change in ({"env_id": "CartPole-v0"}, {"dataset": {**a.config.dataset, "name": "secret"}},
                   {"hparams": {**a.config.hparams, "note": "secret"}}):
        b = copy.deepcopy(a)
        for k, v in change.items():
            setattr(b.config, k, v)
        assert agent_key(b) != key, change
    b = copy.deepcopy(a)
    b.notes = ["agent.zip: ignored 1 zip member that an agent does not use (secret.txt)."]
    assert agent_key(b) != key and agent_key(stamp_agent(b)) == agent_key(b)
    b = copy.deepcopy(a)
    b.__dict__["input_choices"] = {"normalize_from": "upload: secret.csv"}
    assert agent_key(b) != key
    c = copy.deepcopy(a)
    with torch.no_grad():
        next(c.parameters()).add_(1.0)
    assert agent_key(c) != key and agent_key(copy.deepcopy(a)) == key
