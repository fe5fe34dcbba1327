"""Issue 13, item 5: files opened in place (`streamlit run app.py -- --data PATH --agent PATH`, `make app DATA=...
AGENT=...`, Home's path box when the server was started with --local): listed beside the shipped ones, read from
disk once per process, shared by sessions; bad paths are one sentence and lose nothing. Issue 26, item 7: the box
only with --local (`make app LOCAL=1`), never inferred from the bind address."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from trajectories import Dataset, save_dataset
from trajectories.samples import sample_datasets
from ui import local

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app.py"
AGENTS = ROOT / "sample_data" / "agents"
BOX = "Open a file on this machine"


def _cartpole_like(n_episodes: int, seed: int = 0) -> Dataset:
    """CartPole-shaped episodes (4-d observations, 2 actions) of lengths 5, 6, 7, ... with reward 1 per step."""
    rng = np.random.default_rng(seed)
    lengths = [5 + i for i in range(n_episodes)]
    n = sum(lengths)
    starts = np.cumsum([0] + lengths[:-1])
    terminated = np.zeros(n, bool)
    terminated[np.cumsum(lengths) - 1] = True
    return Dataset(rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 2, n), np.ones(n, np.float32),
                   terminated, np.zeros(n, bool), starts, env_id="CartPole-v1", source="test")


@pytest.fixture
def npz(tmp_path) -> Path:
    path = tmp_path / "mine.npz"
    save_dataset(_cartpole_like(3), path)
    return path


@pytest.fixture
def agent_dir(tmp_path) -> Path:
    return Path(shutil.copytree(AGENTS / "cartpole-dt", tmp_path / "my-dt"))


@pytest.fixture
def address():
    """Set server.address for one test (AppTest runs in this process and reads the same config)."""
    before = config.get_option("server.address")
    yield lambda value: config.set_option("server.address", value)
    config.set_option("server.address", before)


def _run(monkeypatch, *args, query=None) -> AppTest:
    monkeypatch.setattr(sys, "argv", [str(APP), *map(str, args)])   # what Streamlit sets for `-- args`
    at = AppTest.from_file(str(APP), default_timeout=60)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def _options(at, key: str) -> list[str]:
    return list(at.selectbox(key=f"{key}_select").options)


# ---- arguments ----------------------------------------------------------------------------------------------
def test_parse_args_repeatable_flags_several_paths_env_and_unknown_args():
    got = local.parse_args(["--data", "a.npz", "b", "--agent", "m", "--data=c", "--bogus", "x"],
                           environ={"SEQLENS_LOCAL_DATA": os.pathsep.join(["e1", "", "e2"]), "SEQLENS_LOCAL_AGENT": "m2"})
    assert got.data == ("a.npz", "b", "c", "e1", "e2") and got.agent == ("m", "m2")
    assert got.problems == ("Ignored unknown command-line arguments --bogus x (app.py takes --data PATH..., --agent PATH... "
                            "and --local).",)
    assert not got.path_box and local.parse_args(["--data", "a.npz", "--local"], environ={}).path_box
    assert local.parse_args(["--local", "--data", "a.npz"], environ={}).data == ("a.npz",)
    broken = local.parse_args(["--agent"], environ={})
    assert broken.data == () and broken.agent == ()
    assert broken.problems == ("Could not read the command-line arguments (argument --agent: expected at least one argument), "
                               "so no file was opened from them.",)


def test_only_app_py_reads_sys_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/bin/pytest", "--data", "x.npz"])   # pytest's own argv is not ours
    assert local.parse_args(environ={}).data == ()
    monkeypatch.setattr(sys, "argv", ["app.py", "--data", "x.npz"])
    assert local.parse_args(environ={}).data == ("x.npz",)


@pytest.mark.parametrize("variables, expected", [
    ("", "--server.address localhost"),
    ("DATA=a.npz", "--server.address localhost -- --data a.npz"),
    ("DATA='a.npz b/dir' AGENT=m", "--server.address localhost -- --data a.npz b/dir --agent m"),
    ("HOST=0.0.0.0 AGENT=m", "--server.address 0.0.0.0 -- --agent m"),
    ("LOCAL=1", "--server.address localhost -- --local"),
    ("DATA=a.npz LOCAL=1", "--server.address localhost -- --data a.npz --local"),
    ("LOCAL=0", "--server.address localhost"),
])
def test_make_app_passes_data_and_agent_only_when_set(variables, expected):
    # under `make test` the sub-make would print "make[1]: Leaving directory": no MAKELEVEL / MAKEFLAGS from the caller
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    out = subprocess.run(f"make -n --no-print-directory app {variables}", shell=True, cwd=ROOT, capture_output=True,
                         text=True, env={**env, "HOST": "my-machine", "LOCAL": "1"}).stdout   # tcsh exports HOST: it must not count
    line = " ".join(" ".join(out.split("ui.serve app.py --server.port 8501")[1:]).replace("\\\n", " ").split())
    assert line == expected


# ---- command-line files ---------------------------------------------------------------------------------
def test_command_line_files_are_listed_selected_and_summarised(monkeypatch, npz, agent_dir):
    at = _run(monkeypatch, "--data", npz, "--agent", agent_dir)
    shipped = list(sample_datasets())
    assert _options(at, "dataset") == shipped + ["local: mine.npz"]
    assert at.session_state["dataset"] == "local: mine.npz"                 # the first local one is the default
    assert at.session_state["agent"] == "local: my-dt" and "cartpole-dt" in _options(at, "agent")
    assert at.metric[0].value == "3" and at.metric[2].value == "6"          # episodes; mean return (5+6+7)/3
    captions = [c.value for c in at.caption]
    unescaped = [c.replace("\\", "").replace("`", "") for c in captions]   # however home.py quotes a path as text
    assert f"Read in place from {npz}" in unescaped and f"Read in place from {agent_dir}" in unescaped
    assert any("local: my-dt" in s.value and "can read" in s.value for s in at.success)
    assert not at.warning


def test_url_choice_wins_over_the_local_default(monkeypatch, npz):
    at = _run(monkeypatch, "--data", npz, query={"dataset": "pendulum", "agent": "pendulum-dt"})
    assert at.session_state["dataset"] == "pendulum" and "local: mine.npz" in _options(at, "dataset")


def test_sessions_share_one_object_read_once_and_a_changed_file_reloads(monkeypatch, tmp_path):
    from ui.data import all_datasets

    path = tmp_path / "shared.npz"
    save_dataset(_cartpole_like(2), path)
    first = local.load("data", path.resolve())[0]
    assert local.load("data", path.resolve())[0] is first
    for _ in range(2):   # two sessions
        at = _run(monkeypatch, "--data", path)
        assert at.metric[0].value == "2"
    monkeypatch.setattr(sys, "argv", [str(APP), "--data", str(path)])
    assert all_datasets()["local: shared.npz"] is first
    save_dataset(_cartpole_like(4), path)                                   # rewritten on disk: a new size and mtime
    reread = local.load("data", path.resolve())[0]
    assert reread is not first and reread.n_episodes == 4
    path.unlink()                                                           # gone: keep what was opened
    kept, note = local.load("data", path.resolve())
    assert kept is reread and note == f"{path.resolve()} does not exist. Showing the version opened before."


def test_reader_limits_apply_and_the_upload_limit_does_not(monkeypatch, tmp_path):
    import ui.data

    path = tmp_path / "bigger-than-uploads.npz"
    save_dataset(_cartpole_like(3), path)
    monkeypatch.setattr(ui.data, "UPLOAD_LIMIT_MB", path.stat().st_size / 2**20 / 2)   # the browser's limit: not ours
    assert local.load("data", path.resolve())[0].n_episodes == 3
    over = tmp_path / "over-the-limit.npz"
    save_dataset(_cartpole_like(3), over)
    monkeypatch.setenv("SEQLENS_MAX_TRANSITIONS", "10")                    # 18 steps: the readers' limit holds
    obj, message = local.load("data", over.resolve())
    assert obj is None and "SEQLENS_MAX_TRANSITIONS" in message and "\n" not in message


def test_minari_directory_opens_in_place(monkeypatch, tmp_path):
    import gymnasium as gym
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = gym.make("CartPole-v1")
    env.action_space.seed(0)
    col = minari.DataCollector(env, data_format="hdf5")
    for ep in range(4):
        col.reset(seed=ep)
        for _ in range(30):
            _, _, term, trunc, _ = col.step(col.action_space.sample())
            if term or trunc:
                break
    with pytest.warns(UserWarning):
        col.create_dataset(dataset_id="test/hopper-like-v0", algorithm_name="random")
    root = tmp_path / "minari" / "test" / "hopper-like-v0"
    ref = minari.load_dataset("test/hopper-like-v0")

    at = _run(monkeypatch, "--data", root)
    assert at.session_state["dataset"] == "local: hopper-like-v0"
    assert at.metric[0].value == f"{ref.total_episodes:,}"
    from ui.data import all_datasets, dataset_path

    ds = all_datasets()["local: hopper-like-v0"]
    assert ds.n_transitions == ref.total_steps and ds.source == str(root) and ds.metadata["format"] == "minari"
    assert dataset_path("local: hopper-like-v0") == str(root)               # bundle manifests can remake from it


def test_bad_command_line_paths_are_skipped_with_one_sentence(monkeypatch, npz, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "missing.npz"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    at = _run(monkeypatch, "--data", missing, npz, "--agent", text, "--frobnicate")
    assert [w.value for w in at.warning] == [
        "Ignored unknown command-line argument --frobnicate (app.py takes --data PATH..., --agent PATH... and --local).",
        f"Skipped --data {missing}: {missing} does not exist.",
        f"Skipped --agent {text}: {text} is not an agent: expected a directory with config.json and model.safetensors, or a .zip of one.",
    ]
    assert _options(at, "dataset") == list(sample_datasets()) + ["local: mine.npz"]   # shipped all there, good one kept
    assert at.session_state["dataset"] == "local: mine.npz" and at.session_state["agent"] == "cartpole-dt"
    err = capsys.readouterr().err
    assert f"seqlens: skipped --data {missing}: {missing} does not exist.\n" in err
    assert err.count(f"skipped --data {missing}") == 1
    at.run()                                                                # a rerun says it again on Home, not on stderr
    assert len(at.warning) == 3 and f"skipped --data {missing}" not in capsys.readouterr().err


def test_two_local_files_with_one_name_are_told_apart(monkeypatch, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        save_dataset(_cartpole_like(2), tmp_path / folder / "same.npz")
    at = _run(monkeypatch, "--data", tmp_path / "a" / "same.npz", tmp_path / "b" / "same.npz")
    assert _options(at, "dataset")[-2:] == ["local: a/same.npz", "local: b/same.npz"]


def test_unreadable_path_is_one_sentence(monkeypatch, npz):
    monkeypatch.setattr(local.os, "access", lambda *a, **k: False)   # tests run as root, where chmod 000 still reads
    assert local.check_path(npz) == f"{npz} is not readable by the server (permission denied)."


# ---- the path box -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [None, "0.0.0.0", "localhost", "127.0.0.1", "::1"])
@pytest.mark.parametrize("flag", [False, True])
def test_path_box_only_when_started_with_local(monkeypatch, address, value, flag):
    """Issue 26: a loopback server is also what a reverse proxy on the same machine reaches, so the bind address
    says nothing about who is typing: the box shows exactly when the operator passed --local."""
    address(value)
    at = _run(monkeypatch, *(["--local"] if flag else []))
    assert (BOX in [e.label for e in at.expander]) is flag


def _type(at, path) -> AppTest:
    at.text_input(key="local_path").input(str(path))
    at.button(key="local_open").click().run()
    assert not at.exception, at.exception
    return at


def test_typed_paths_open_for_this_session_only(monkeypatch, npz, agent_dir):
    at = _run(monkeypatch, "--local")
    _type(at, npz)
    assert not at.error
    assert at.session_state["dataset"] == "local: mine.npz" and "local: mine.npz" in _options(at, "dataset")
    assert [s.value for s in at.sidebar.success] == [f"Opened {npz}: 3 episodes, 18 steps."]
    assert at.metric[0].value == "3"
    _type(at, agent_dir)                                                    # a checkpoint directory: an agent
    assert not at.error and at.session_state["agent"] == "local: my-dt"
    assert at.session_state["dataset"] == "local: mine.npz"                 # the dataset choice stays
    assert any("local: my-dt" in s.value and "can read" in s.value for s in at.success)
    other = _run(monkeypatch, "--local")                                    # another session lists neither
    assert "local: mine.npz" not in _options(other, "dataset") and "local: my-dt" not in _options(other, "agent")


@pytest.mark.parametrize("bad, message", [
    ("missing", "{path} does not exist."),
    ("notes.txt", "{path}: unknown file type '.txt' (expected .npz, .parquet, .csv, .json, .hdf5/.h5 (Minari or D4RL), "
                  "a Minari dataset directory, or a .zip of one)."),
    ("empty-dir", "{path} is not a Minari dataset directory (expected data/main_data.hdf5 or data/<episode>/ arrow folders)."),
])
def test_bad_typed_path_is_one_sentence_and_keeps_the_selection(monkeypatch, tmp_path, npz, bad, message):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty-dir").mkdir()
    at = _run(monkeypatch, "--local")
    _type(at, npz)
    at.selectbox(key="dataset_select").select("keydoor").run()
    path = tmp_path / bad
    _type(at, path)
    from ui.text import md_escape   # the sentence quotes the path and what the reader found: shown as text

    assert [e.value for e in at.error] == [md_escape(message.format(path=path))]
    assert at.session_state["dataset"] == "keydoor" and "local: mine.npz" in _options(at, "dataset")
    assert not any(o.endswith(bad) for o in _options(at, "dataset"))


def test_analysis_pages_read_the_local_dataset(monkeypatch, npz):
    monkeypatch.setattr(sys, "argv", [str(APP), "--data", str(npz)])
    at = AppTest.from_file(str(ROOT / "views" / "1_Dataset.py"), default_timeout=60)
    at.run()                                                                # no choice made: the local default
    assert not at.exception, at.exception
    assert at.metric[2].value == "5"                                        # episode 0: 5 steps of reward 1


def test_serve_tells_the_operator_what_local_opens():
    from ui.serve import path_box_note

    assert path_box_note(["app.py", "--server.address", "localhost", "--", "--data", "a.npz"]) is None
    assert path_box_note(["app.py", "--local"]) is None                  # before `--`: Streamlit's, not app.py's
    on_loopback = path_box_note(["app.py", "--server.address", "127.0.0.1", "--", "--local"])
    assert "opens any file" in on_loopback and "no reverse proxy" in on_loopback
    for argv in (["app.py", "--", "--local"], ["app.py", "--server.address=0.0.0.0", "--", "--local"]):
        assert "anyone who reaches it can read them" in path_box_note(argv)
