"""Issue 26, items 3, 7 and 8: directory walks that never follow a link out of the folder or into a cycle, bounded
(trajectories/walk.py); pyarrow given the walked files, never a folder; no value from a file echoed in an error;
the local-file cache keyed on content (ui/local.py signature). The path box's --local flag is tested in
tests/test_local_files.py. Cases that once hung or aborted the process run in a subprocess with a timeout, so a
regression fails instead of hanging the suite."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.hostile_folders import SECRET, SECRET_TEXT, arrow_episode, hostile_folder_files, minari_arrow_folder
from trajectories import DatasetError, load_dataset

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = 300                                  # the entry limit these tests run under (default 100,000)
LIMITS = {"SEQLENS_MAX_WALK_ENTRIES": str(ENTRIES)}
RSS_MB = 200                                   # no refusal may raise peak RSS by more than this


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, dict]:
    return {c["name"]: c for c in hostile_folder_files(tmp_path_factory.mktemp("hostile"), many_entries=ENTRIES + 1)}


@pytest.fixture(autouse=True)
def _limits(monkeypatch):
    for k, v in LIMITS.items():
        monkeypatch.setenv(k, v)


NAMES = ["minari_symlink_cycle", "minari_episode_to_usr", "minari_data_folder_elsewhere", "minari_episode_file_outside",
         "minari_arrow_file_outside", "minari_metadata_outside", "minari_fifo_episode_file", "minari_too_deep",
         "minari_too_many_entries", "csv_secret_in_action"]
HUNG = ["minari_symlink_cycle", "minari_episode_to_usr", "minari_fifo_episode_file"]   # hung or aborted before


def test_the_list_is_what_the_tests_cover(cases):
    assert sorted(cases) == sorted(NAMES)
    assert all(c["kind"] == "data" and c["expect"] == c["expect"].lower() for c in cases.values())


_REFUSE = """
import json, resource, sys, time
from trajectories import DatasetError, load_dataset
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
before, t = rss(), time.perf_counter()
try:
    load_dataset(sys.argv[1]); message = ""
except DatasetError as e:
    message = str(e)
print(json.dumps({"message": message, "seconds": time.perf_counter() - t, "rss_mb": rss() - before}))
"""


def _refuse_in_subprocess(path: Path, timeout: float = 60) -> dict:
    out = subprocess.run([sys.executable, "-c", _REFUSE, str(path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, **LIMITS})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", [n for n in NAMES if n not in HUNG])
def test_refused_with_one_sentence(cases, name):
    case = cases[name]
    with pytest.raises(DatasetError) as err:
        load_dataset(case["path"])
    message = str(err.value)
    assert case["expect"] in message.lower() and "\n" not in message
    assert SECRET_TEXT not in message


@pytest.mark.parametrize("name", ["minari_symlink_cycle", "minari_episode_to_usr", "minari_data_folder_elsewhere",
                                  "minari_episode_file_outside", "minari_fifo_episode_file", "minari_too_many_entries"])
def test_refused_quickly_and_within_memory_in_a_fresh_process(cases, name):
    """`ln -s . a` once hung the reader (1.2 GB and rising at 60 s); `data/0 -> /usr` aborted it (std::bad_alloc);
    a FIFO blocked forever on open."""
    got = _refuse_in_subprocess(cases[name]["path"])
    assert cases[name]["expect"] in got["message"].lower() and SECRET_TEXT not in got["message"]
    assert got["seconds"] < 10 and got["rss_mb"] < RSS_MB, got


def test_cli_inspect_refuses_the_cycle_with_exit_code_2(cases):
    path = cases["minari_symlink_cycle"]["path"]
    out = subprocess.run([sys.executable, "cli.py", "inspect", str(path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, **LIMITS})
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().count("\n") == 0 and "data/0/a is a symbolic link" in out.stderr


_LOCAL = """
import json, sys
from pathlib import Path
from ui import local
obj, message = local.load("data", Path(sys.argv[1]).resolve())
print(json.dumps({"loaded": obj is not None, "message": message}))
"""


@pytest.mark.parametrize("name", ["minari_symlink_cycle", "minari_episode_to_usr", "minari_too_many_entries"])
def test_a_local_folder_is_refused_the_same_way(cases, name):
    """The same folders given as a local path (--data, or the path box): one sentence, the server process lives."""
    out = subprocess.run([sys.executable, "-c", _LOCAL, str(cases[name]["path"])], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={**os.environ, **LIMITS})
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert not got["loaded"] and cases[name]["expect"] in got["message"].lower() and "\n" not in got["message"]


def test_limits_are_settings(cases, monkeypatch):
    monkeypatch.setenv("SEQLENS_MAX_WALK_DEPTH", "20")
    monkeypatch.setenv("SEQLENS_MAX_WALK_ENTRIES", str(ENTRIES + 10))
    assert load_dataset(cases["minari_too_many_entries"]["path"]).n_episodes == 2   # '_' files are not episode data
    assert load_dataset(cases["minari_too_deep"]["path"]).n_episodes == 2   # data/1 holds both of its files


def test_a_valid_arrow_folder_reads_pyarrow_gets_files_not_a_folder(tmp_path, monkeypatch):
    import pyarrow.dataset as pads

    root = minari_arrow_folder(tmp_path / "ok", episodes=3)
    asked = []
    real = pads.dataset

    def spy(source, *a, **k):
        asked.append(source)
        return real(source, *a, **k)

    monkeypatch.setattr(pads, "dataset", spy)
    ds = load_dataset(root)
    assert ds.n_episodes == 3 and ds.n_transitions == 5 + 6 + 7 and ds.env_id == "CartPole-v1" and ds.n_actions == 2
    assert asked == [[str(root / "data" / str(i) / "part-0.arrow")] for i in range(3)]
    (root / "data" / "0" / "_ignored").write_text("x")   # what pyarrow's discovery skipped is still skipped
    (root / "data" / "0" / ".hidden").write_text("x")
    assert load_dataset(root).equals(ds)


def test_a_link_outside_a_dataset_folder_is_still_fine(tmp_path):
    """The policy is about links *inside* the folder: naming a link to a dataset folder opens that folder."""
    root = minari_arrow_folder(tmp_path / "real")
    os.symlink(root, tmp_path / "alias")
    assert load_dataset(tmp_path / "alias").n_episodes == 2


# ---- no value from a file in an error ---------------------------------------------------------------------------
def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("make", [
    lambda d: _csv(d / "action.csv", f"episode,obs_0,action,reward\n0,0.1,1,1\n0,0.2,{SECRET_TEXT},1\n"),
    lambda d: _csv(d / "list.csv", f'obs,action,reward\n"[1, 2]",0,1\n"[""{SECRET_TEXT}"", 2]",0,1\n'),
    lambda d: _csv(d / "steps.csv", f"episode,step,obs_0,action,reward\n{SECRET_TEXT},0,0.1,1,1\n{SECRET_TEXT},0,0.2,1,1\n"),
    lambda d: _csv(d / "json.json", json.dumps([{"obs_0": 1, "action": SECRET_TEXT, "reward": 1}])),
    lambda d: _csv(d / "float.csv", "episode,obs_0,action,reward\n0,0.1,1,1\n0,31337e40,1,1\n"),
    lambda d: _csv(d / "flag.csv", "episode,obs_0,action,reward,terminated\n0,0.1,1,1,31337\n"),
], ids=["csv_text_action", "csv_text_in_list", "csv_episode_id_step_twice", "json_text_action", "csv_number_past_f32",
        "csv_number_as_flag"])
def test_no_value_from_the_file_is_in_the_error(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    message = str(err.value)
    assert SECRET_TEXT not in message and "1337" not in message and "\n" not in message   # 31337e40 prints 3.1337e+44
    assert path.name in message


def test_npz_values_are_not_echoed(tmp_path):
    n = 6
    base = dict(observations=np.zeros((n, 1)), actions=np.zeros(n, int), rewards=np.ones(n))
    np.savez(tmp_path / "ids.npz", **base, episode=np.array([31337, 31337, 7, 7, 31337, 31337]))
    np.savez(tmp_path / "neg.npz", **{**base, "actions": np.array([0, 0, -31337, 0, 0, 0])})
    np.savez(tmp_path / "len.npz", **base, episode_lengths=np.array([31337.5, -31331.5]))
    for f in ("ids.npz", "neg.npz", "len.npz"):
        with pytest.raises(DatasetError) as err:
            load_dataset(tmp_path / f)
        assert "31337" not in str(err.value) and "31331" not in str(err.value), str(err.value)


# ---- the local-file cache keyed on content -----------------------------------------------------------------------
def _same_size_rewrite(path: Path, data: bytes) -> None:
    """Rewrite in place at the same size and set the mtime back, as `cp -p` or a careful tool would."""
    before = path.stat()
    assert len(data) == before.st_size
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_size == before.st_size


def test_a_file_rewritten_at_the_same_size_and_mtime_is_read_again(tmp_path):
    from ui import local

    path = _csv(tmp_path / "r.csv", "episode,obs_0,action,reward\n0,0.1,1,1\n0,0.2,1,1\n").resolve()
    first = local.load("data", path)[0]
    assert local.load("data", path)[0] is first and first.episode_returns.tolist() == [2.0]
    _same_size_rewrite(path, b"episode,obs_0,action,reward\n0,0.1,1,5\n0,0.2,1,5\n")
    again = local.load("data", path)[0]
    assert again is not first and again.episode_returns.tolist() == [10.0]


def test_a_folder_whose_file_is_rewritten_the_same_way_is_read_again(tmp_path, monkeypatch):
    from ui import local

    monkeypatch.setattr(local, "WALK_TTL_S", 0.0)   # the walk is reused for 2 s within one rerun
    root = minari_arrow_folder(tmp_path / "m").resolve()
    first = local.load("data", root)[0]
    assert local.load("data", root)[0] is first
    episode = root / "data" / "0" / "part-0.arrow"
    other = arrow_episode(tmp_path / "other.arrow", steps=5, seed=42)   # same shapes, other values: same size
    _same_size_rewrite(episode, other.read_bytes())
    again = local.load("data", root)[0]
    assert again is not first and not np.array_equal(again.observations, first.observations)


def test_the_change_key_reads_only_so_much_of_a_folder(tmp_path, monkeypatch):
    from ui import local

    monkeypatch.setattr(local, "WALK_TTL_S", 0.0)
    monkeypatch.setattr(local, "HASH_BUDGET", 3 * 2 * local.HASH_BLOCK)
    for i in range(10):
        (tmp_path / f"f{i}").write_bytes(os.urandom(3 * local.HASH_BLOCK))
    read = []
    real = local._head_tail
    monkeypatch.setattr(local, "_head_tail", lambda *a: read.append(real(*a)) or read[-1])
    local.signature(tmp_path.resolve())
    assert len(read) == 3 and sum(read) == 3 * 2 * local.HASH_BLOCK


def test_the_change_key_never_follows_a_link(tmp_path):
    from ui import local

    os.symlink("/usr", tmp_path / "usr")
    os.symlink(".", tmp_path / "loop")
    (tmp_path / "f").write_bytes(SECRET)
    newest, total, _ = local.signature(tmp_path.resolve())
    assert total == len(SECRET)
