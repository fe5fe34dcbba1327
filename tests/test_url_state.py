"""The URL is the state (ui/nav.py): the selection follows every navigation — the sidebar's links, a direct link, a
reload (a new session on the same URL), back / forward (a URL this session did not write) — and a name that is not
loaded is one warning and the default. AppTest follows a sidebar link the way the browser does: the link's query
string, then its page (tests/test_browser_url.py walks the same in Chromium)."""
from pathlib import Path
from urllib.parse import parse_qs

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from ui.nav import PAGES

ROOT = Path(__file__).resolve().parent.parent
PATHS = {title: path for path, title, _, _ in PAGES}


def _app(**params) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params.update(params)
    return at


def _open(at: AppTest, title: str) -> AppTest:
    """A direct link (or reload): the page with the query params the test set."""
    at.switch_page(PATHS[title]).run()
    assert not at.exception, at.exception
    return at


def _click(at: AppTest, title: str) -> AppTest:
    """A click on the sidebar's link to `title`: the browser sends the link's query string and page, nothing else."""
    link = next(link for link in at.page_link if link.value == title)
    at.query_params.clear()
    at.query_params.update({k: v[-1] for k, v in parse_qs(link.proto.query_string).items()})
    return _open(at, title)


def _param(at: AppTest, key: str):
    v = at.query_params.get(key)
    return v[-1] if isinstance(v, list) else v


def _shows(at: AppTest, agent: str, dataset: str) -> None:
    captions = [c.value for c in at.caption]
    assert any(f"Agent **{agent}**" in c and f"dataset **{dataset}**" in c for c in captions), captions
    assert _param(at, "agent") == agent and _param(at, "dataset") == dataset


def test_every_sidebar_link_carries_the_selection():
    at = _open(_app(agent="keydoor-dt", dataset="keydoor"), "Embeddings")
    _shows(at, "keydoor-dt", "keydoor")
    links = {link.value: parse_qs(link.proto.query_string) for link in at.page_link}
    assert list(links) == list(PATHS)   # the sidebar lists ui/nav.py's pages, in order
    for title, query in links.items():
        assert query["agent"] == ["keydoor-dt"] and query["dataset"] == ["keydoor"], title


def test_direct_link_then_sidebar_then_reload_keeps_agent_and_dataset():
    at = _open(_app(agent="keydoor-dt", dataset="keydoor"), "Embeddings")
    _click(at, "Predicted vs real")
    _shows(at, "keydoor-dt", "keydoor")
    reloaded = _open(_app(**{k: _param(at, k) for k in at.query_params}), "Predicted vs real")   # a new session
    _shows(reloaded, "keydoor-dt", "keydoor")


def test_back_to_an_older_url_shows_what_it_names():
    """Back / forward: the browser sends the older URL; it wins over what the session chose since."""
    at = _open(_app(agent="keydoor-dt", dataset="keydoor"), "Embeddings")
    _click(at, "Home")
    at.selectbox(key="agent_select").select("cartpole-dt").run()
    at.selectbox(key="dataset_select").select("cartpole").run()
    assert _param(at, "agent") == "cartpole-dt"
    at.query_params.clear()
    at.query_params.update(agent="keydoor-dt", dataset="keydoor")
    _open(at, "Embeddings")
    _shows(at, "keydoor-dt", "keydoor")


def test_a_link_naming_an_agent_not_loaded_is_one_warning_and_the_default():
    at = _open(_app(agent="no-such-agent", dataset="keydoor"), "Embeddings")
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "no-such-agent" in warnings[0] and "cartpole-dt" in warnings[0], warnings
    # the default agent cannot read keydoor's observations: the page says so; the URL names what is shown
    assert _param(at, "agent") == "cartpole-dt" and _param(at, "dataset") == "keydoor"
    _click(at, "Home")
    assert not at.warning or all("no-such-agent" not in w.value for w in at.warning)   # said once, not on every page


def test_a_link_naming_an_upload_of_another_session_is_one_warning():
    at = _open(_app(agent="cartpole-dt", dataset="upload: mine.csv"), "Home")
    warnings = [w.value for w in at.warning if "upload: mine.csv" in w.value]
    assert len(warnings) == 1 and "showing cartpole" in warnings[0], [w.value for w in at.warning]
    assert at.selectbox(key="dataset_select").value == "cartpole" and _param(at, "dataset") == "cartpole"


def _csv() -> bytes:
    rows = [{"episode": e, "step": t, "obs_0": t * 0.5, "obs_1": -t, "obs_2": 0.0, "obs_3": 1.0, "action": t % 2,
             "reward": 1.0, "done": t == 5} for e in range(3) for t in range(6)]
    return pd.DataFrame(rows).to_csv(index=False).encode()


def test_home_dataset_box_shows_the_upload_made_on_the_dataset_page():
    at = _open(_app(), "Home")
    assert at.selectbox(key="dataset_select").value == "cartpole"
    _click(at, "Dataset")
    at.file_uploader(key="upload_dataset").upload("mine.csv", _csv(), "text/csv").run()
    assert not at.exception and not at.error
    assert any(c.value.startswith("**upload: mine.csv**") for c in at.caption), [c.value for c in at.caption]
    assert _param(at, "dataset") == "upload: mine.csv"
    _click(at, "Home")
    assert at.selectbox(key="dataset_select").value == "upload: mine.csv"
    _click(at, "Embeddings")
    _shows(at, "cartpole-dt", "upload: mine.csv")
    _click(at, "Home")
    assert at.selectbox(key="dataset_select").value == "upload: mine.csv"
    at.selectbox(key="dataset_select").select("cartpole").run()
    _click(at, "Embeddings")
    _shows(at, "cartpole-dt", "cartpole")


def test_environment_and_compare_follow_the_sidebar():
    at = _open(_app(agent="cartpole-dt", dataset="cartpole", compare="randomized"), "Attention")
    assert at.selectbox(key="compare_select").value == "randomized"
    _click(at, "Circuits")
    assert at.selectbox(key="compare_select").value == "randomized" and _param(at, "compare") == "randomized"
    _click(at, "Home")
    assert _param(at, "compare") == "randomized"   # Home has no compare select; the URL still carries it


@pytest.mark.parametrize("env", ["CartPole-v1"])
def test_environment_choice_is_in_every_link(env):
    at = _open(_app(agent="cartpole-dt", dataset="cartpole", env=env), "Home")
    links = {link.value: parse_qs(link.proto.query_string) for link in at.page_link}
    assert all(q.get("env") == [env] for q in links.values()), links
    _click(at, "Dataset")
    assert _param(at, "env") == env


def test_player_episode_survives_leaving_the_page_and_a_reload():
    at = _open(_app(agent="cartpole-dt", dataset="cartpole", episode="2"), "Episode player")
    assert at.number_input(key="player_episode").value == 2 and _param(at, "episode") == "2"
    _click(at, "Dataset")
    assert _param(at, "episode") is None   # another page's parameter stays off this page's URL
    _click(at, "Episode player")
    assert at.number_input(key="player_episode").value == 2 and _param(at, "episode") == "2"
    reloaded = _open(_app(**{k: _param(at, k) for k in at.query_params}), "Episode player")
    assert reloaded.number_input(key="player_episode").value == 2
