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
    assert len(shipped) == 5
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
    names = list(sample_datasets())
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
