"""AppTest of the Dataset page: renders the selected dataset's episode; moving the slider changes the data."""
import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from trajectories import load_dataset
from trajectories.samples import SAMPLE_DIR

PAGE = str(Path(__file__).resolve().parent.parent / "views" / "1_Dataset.py")


def _y(chart, trace=0):
    y = json.loads(chart.proto.spec)["data"][trace]["y"]
    if isinstance(y, dict):  # plotly's typed-array encoding of numpy data
        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=np.dtype(y["dtype"])).astype(float)
    return np.array(y, dtype=float)


def test_episode_browser_shows_the_selected_episode():
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["dataset"] = "pendulum"
    at.run()
    assert not at.exception, at.exception
    ds = load_dataset(SAMPLE_DIR / "pendulum.npz")
    charts = at.get("plotly_chart")
    np.testing.assert_allclose(_y(charts[0]), ds.episode(0).observations[:, 0], rtol=1e-6)
    np.testing.assert_allclose(_y(charts[2]), ds.episode(0).returns_to_go, rtol=1e-6)
    at.slider(key="episode_index").set_value(7).run()
    np.testing.assert_allclose(_y(at.get("plotly_chart")[2]), ds.episode(7).returns_to_go, rtol=1e-6)
    assert at.metric[2].value == f"{ds.episode(7).total_return:.4g}"


def test_return_rank_order_starts_with_the_best_episode():
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["dataset"] = "cartpole"
    at.run()
    at.radio(key="episode_order").set_value("return rank (best first)").run()
    ds = load_dataset(SAMPLE_DIR / "cartpole.npz")
    assert at.metric[2].value == f"{ds.episode_returns.max():.4g}"


def test_every_dataset_figure_downloads_and_the_page_has_its_bundle():
    """Issue 27: the Dataset page's figures are the catalog's (what `cli.py export --data FILE` writes), each with the
    five downloads, and the page's bundle holds all four."""
    from analysis.publish import catalog

    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["dataset"] = "cartpole"
    at.run()
    assert not at.exception, at.exception
    at.slider(key="episode_index").set_value(3).run()
    ds = load_dataset(SAMPLE_DIR / "cartpole.npz")
    labels = [b.proto.label for b in at.get("download_button")]
    assert [lab for lab in labels if lab in ("PNG", "SVG", "PDF", "HTML", "CSV")] == ["PNG", "SVG", "PDF", "HTML", "CSV"] * 4
    assert labels[-1] == "Download all 4 figures of this page (zip: PNG, SVG, PDF, HTML, CSV + manifest)"
    keys = [b.proto.id for b in at.get("download_button")]
    for key in ("obs_png", "act_csv", "rtg_svg", "dataset_hist_pdf", "bundle_Dataset"):
        assert any(key in k for k in keys), (key, keys)
    charts = at.get("plotly_chart")
    for chart, (name, params) in zip(charts, [("episode_observations", {"episode": 3}), ("episode_actions", {"episode": 3}),
                                              ("episode_timeline", {"episode": 3}), ("returns_histogram", {})]):
        want = catalog.make(name, None, ds, **params)
        got = json.loads(chart.proto.spec)
        assert got["layout"]["title"]["text"] == want.figure.layout.title.text
    np.testing.assert_allclose(_y(charts[0]), ds.episode(3).observations[:, 0], rtol=1e-6)
    acts = catalog.make("episode_actions", None, ds, episode=3)
    names = ds.metadata.get("action_labels") or [str(a) for a in range(ds.n_actions)]
    assert acts.data["action_label"].tolist() == [names[a] for a in ds.episode(3).actions]


def test_home_histogram_downloads_like_every_figure():
    at = AppTest.from_file(str(Path(PAGE).parent.parent / "home.py"), default_timeout=120)
    at.session_state["dataset"] = "cartpole"
    at.run()
    assert not at.exception, at.exception
    keys = [b.proto.id for b in at.get("download_button")]
    for fmt in ("png", "svg", "pdf", "html", "csv"):
        assert any(f"returns_hist_{fmt}" in k for k in keys), (fmt, keys)
    [bundle] = [b for b in at.get("download_button") if "bundle_Home" in b.proto.id]
    assert bundle.proto.label == "Download this page's figure (zip: PNG, SVG, PDF, HTML, CSV + manifest)"
    hist = [json.loads(c.proto.spec) for c in at.get("plotly_chart")][0]
    ds = load_dataset(SAMPLE_DIR / "cartpole.npz")
    np.testing.assert_allclose(np.sort(_x(hist)), np.sort(ds.episode_returns), rtol=1e-6)


def _x(spec):
    x = spec["data"][0]["x"]
    if isinstance(x, dict):
        return np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"])).astype(float)
    return np.array(x, dtype=float)
