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
