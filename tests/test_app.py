"""AppTest of the home page: shipped datasets listed with their summaries; uploads good and bad."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from trajectories import load_dataset
from trajectories.samples import sample_datasets


@pytest.fixture
def app():
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def _frame(at, first_column: str) -> pd.DataFrame:
    """The page's table whose first column is `first_column` (AppTest does not expose dataframe keys)."""
    return next(d.value for d in at.dataframe if d.value.columns[0] == first_column)


def _table(at) -> pd.DataFrame:
    return _frame(at, "dataset")


def test_home_lists_every_shipped_dataset(app):
    shipped = sample_datasets()
    assert len(shipped) == 8
    table = _table(app).set_index("dataset")
    assert list(table.index) == list(shipped)
    for name, path in shipped.items():
        ds = load_dataset(path)
        row = table.loc[name]
        assert row["episodes"] == ds.n_episodes and row["steps"] == ds.n_transitions
        assert row["return min"] == pytest.approx(ds.episode_returns.min())
        assert row["return mean"] == pytest.approx(ds.episode_returns.mean())
        assert row["return max"] == pytest.approx(ds.episode_returns.max())


def test_selecting_a_dataset_changes_the_histogram(app):
    from ui.data import DEFAULT_DATASET

    names = list(sample_datasets())
    names[1] = names[names.index(DEFAULT_DATASET) + 1]   # the one after the default (breakout sorts before it)
    first = app.get("plotly_chart")[0].proto.spec
    app.selectbox(key="dataset_select").select(names[1]).run()
    second = app.get("plotly_chart")[0].proto.spec
    assert first != second
    assert app.session_state["dataset"] == names[1]
    assert app.query_params["dataset"] == [names[1]] or app.query_params["dataset"] == names[1]
    expected = load_dataset(sample_datasets()[names[1]]).n_episodes
    assert app.metric[0].value == f"{expected:,}"


def _csv_bytes() -> bytes:
    rows = [{"episode": e, "step": t, "obs_0": t * 0.5, "obs_1": -t, "action": t % 2, "reward": 1.0, "done": t == 3}
            for e in range(2) for t in range(4)]
    return pd.DataFrame(rows).to_csv(index=False).encode()


def test_upload_csv_becomes_the_selection(app):
    app.file_uploader(key="upload_dataset").upload("mine.csv", _csv_bytes(), "text/csv").run()
    assert not app.exception and not app.error
    assert app.session_state["dataset"] == "upload: mine.csv"
    table = _table(app).set_index("dataset")
    assert table.loc["upload: mine.csv", "episodes"] == 2 and table.loc["upload: mine.csv", "steps"] == 8
    assert app.metric[2].value == "4"  # mean return


def test_bad_upload_is_one_sentence_and_keeps_selection(app):
    names = list(sample_datasets())
    app.selectbox(key="dataset_select").select(names[2]).run()
    bad = b"episode,step,obs_0,action,reward\n0,0,1,0,1\n0,1,nan,0,1\n"
    app.file_uploader(key="upload_dataset").upload("broken.csv", bad, "text/csv").run()
    assert not app.exception
    assert [e.value for e in app.error] == ["obs_0 has a missing value (NaN) at row 2 (line 3 counting the header) of broken.csv."]
    assert app.session_state["dataset"] == names[2]
    assert "upload: broken.csv" not in list(_table(app)["dataset"])


def test_home_lists_the_shipped_agents(app):
    from models.recipes import SAMPLE_AGENTS

    agents = _frame(app, "agent").set_index("agent")
    assert set(agents.index) == set(SAMPLE_AGENTS)
    assert agents.loc["cartpole-dt", "kind"] == "dt" and agents.loc["cartpole-dt", "K"] == 20
    assert "500 → " in agents.loc["cartpole-dt", "evaluation"]


# ---- agents: choice, card, uploads ----------------------------------------------------------------------
def _zip_dir(src: Path) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in src.iterdir():
            z.write(f, f"{src.name}/{f.name}")
    return buf.getvalue()


AGENTS = Path(__file__).resolve().parent.parent / "sample_data" / "agents"


def test_choosing_an_agent_shows_its_card_and_goes_in_the_url(app):
    assert app.session_state["agent"] == "cartpole-dt"
    app.selectbox(key="agent_select").select("pendulum-tt").run()
    assert not app.exception
    assert app.session_state["agent"] == "pendulum-tt"
    assert app.query_params["agent"] in ("pendulum-tt", ["pendulum-tt"])
    card = _frame(app, "").set_index("")["value"]
    assert card["horizon_cap"] == "12" and card["n_bins"] == "100"
    # cartpole data does not fit a pendulum agent: one sentence, no exception
    assert any("observation features but the tt agent expects 3" in w.value for w in app.warning)


def test_url_reproduces_the_choice():
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=60)
    at.query_params["agent"] = "keydoor-dt"
    at.query_params["dataset"] = "keydoor"
    at.run()
    assert not at.exception
    assert at.session_state["agent"] == "keydoor-dt" and at.session_state["dataset"] == "keydoor"
    assert any("keydoor-dt" in s.value and "can read" in s.value for s in at.success)


def test_upload_agent_zip_becomes_the_selection(app):
    app.file_uploader(key="upload_agent").upload("my-mlp.zip", _zip_dir(AGENTS / "cartpole-mlp"), "application/zip").run()
    assert not app.exception and not app.error
    assert app.session_state["agent"] == "upload: my-mlp.zip"
    assert any(s.value == "Loaded my-mlp.zip: a mlp agent, K = 1." for s in app.success)


def _escaping_zip(member: str) -> bytes:
    """A zip whose one member would land outside the folder it is unpacked into."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(member, b"{}")
    return buf.getvalue()


@pytest.mark.parametrize("name, data, message", [
    ("agent.pt", b"\x80\x04junk", "agent.pt is a pickle-based checkpoint (.pt); seqlens never unpickles files"),
    ("broken.zip", b"PK\x03\x04garbage", "broken.zip is not a valid zip file"),
    ("evil.zip", _escaping_zip("../evil/config.json"), "evil.zip contains a path outside its folder (../evil/config.json)"),
])
def test_bad_agent_upload_is_one_sentence_and_keeps_selection(app, name, data, message):
    app.selectbox(key="agent_select").select("keydoor-dt").run()
    app.file_uploader(key="upload_agent").upload(name, data, "application/octet-stream").run()
    assert not app.exception
    assert len(app.error) == 1 and app.error[0].value.startswith(message), app.error[0].value
    assert app.session_state["agent"] == "keydoor-dt"


def _npz_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, observations=np.zeros((6, 2), np.float32), actions=np.zeros(6, np.int64), rewards=np.ones(6, np.float32),
             terminals=np.array([0, 0, 1, 0, 0, 1], bool))
    return buf.getvalue()


@pytest.mark.parametrize("name, data, message", [
    ("garbage.json", b"hello", "garbage.json"),
    ("corrupt.npz", b"PK\x03\x04 this is not a zip", "corrupt.npz"),
    ("truncated.npz", _npz_bytes()[:200], "truncated.npz"),
    ("truncated.parquet", b"PAR1\x00\x00", "truncated.parquet"),
    ("evil.zip", _escaping_zip("../escape/main_data.hdf5"), "evil.zip contains a path outside its folder"),
])
def test_bad_dataset_uploads_are_one_sentence(app, name, data, message):
    names = list(sample_datasets())
    app.selectbox(key="dataset_select").select(names[3]).run()
    app.file_uploader(key="upload_dataset").upload(name, data, "application/octet-stream").run()
    assert not app.exception
    assert len(app.error) == 1 and message in app.error[0].value, app.error[0].value
    assert app.error[0].value.count(".") >= 1 and "\n" not in app.error[0].value          # one sentence
    assert app.session_state["dataset"] == names[3]


def test_oversized_upload_is_refused_before_reading(app, monkeypatch):
    import ui.data

    monkeypatch.setattr(ui.data, "UPLOAD_LIMIT_MB", 0.001)
    app.file_uploader(key="upload_dataset").upload("big.csv", _csv_bytes() * 20, "text/csv").run()
    assert not app.exception
    assert "uploads are limited to" in app.error[0].value
    assert app.session_state["dataset"] != "upload: big.csv"
