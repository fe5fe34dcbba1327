"""The Dataset page on image / grid observations: a strip of pictures at the chosen steps (grids as coloured cells),
not a line per pixel; the episode_frames figure's pictures equal a hand-made rendering."""
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from analysis.publish import catalog
from analysis.publish.figures.dataset import CELL_PX, frames_rgb
from trajectories import Dataset

PAGE = str(Path(__file__).resolve().parent.parent / "views" / "1_Dataset.py")


def _minigrid(n=12):
    """7x7 MiniGrid views: walls (object 2, grey 5) on the top row, a yellow key (5, 4) at x=3, y=2, the agent (10, red)
    at its own cell x=3, y=6 — MiniGrid indexes image[x, y]."""
    img = np.zeros((n, 7, 7, 3), np.uint8)
    img[..., 0] = 1
    img[:, :, 0] = (2, 5, 0)
    img[:, 3, 2] = (5, 4, 0)
    img[:, 3, 6] = (10, 0, 0)
    return Dataset(img, np.arange(n) % 3, np.zeros(n), np.zeros(n, bool), np.zeros(n, bool), [0, 5][:1 + (n > 5)], source="grid.npz",
                   obs_extras={"direction": np.arange(n) % 4, "mission": np.zeros(n, int)}, missions=["get the <b>key</b>"])


def test_grid_cells_drawn_in_their_colours_at_their_places():
    pics = frames_rgb(_minigrid(1).observations, grid=True)
    assert pics.shape == (1, 7 * CELL_PX, 7 * CELL_PX, 3)
    centre = lambda x, y: tuple(pics[0, y * CELL_PX + CELL_PX // 2, x * CELL_PX + CELL_PX // 2])   # noqa: E731
    assert centre(3, 2) == (255, 255, 0)      # the key, yellow, row y=2
    assert centre(3, 6) == (255, 0, 0)        # the agent at the bottom centre
    assert centre(0, 0) == (100, 100, 100)    # a grey wall on the top row
    assert centre(1, 3) == (30, 30, 30)       # empty floor
    assert tuple(pics[0, 0, 5]) == (20, 20, 20)   # the cell border


def test_frames_figure_steps_labels_and_escaped_mission():
    fig = catalog.make("episode_frames", None, _minigrid(), episode=1, start=1, stop=5, frames=3)
    np.testing.assert_array_equal(fig.data["step"], [1, 3, 5])
    np.testing.assert_array_equal(fig.data["direction"], [2, 0, 2])   # steps 6, 8, 10 of the dataset
    assert [a.text for a in fig.figure.layout.annotations] == ["step 1<br>facing ←", "step 3<br>facing →",
                                                              "step 5<br>facing ←"]
    assert "get the &lt;b&gt;key&lt;/b&gt;" in fig.figure.layout.title.text
    assert len(fig.figure.data) == 3 and fig.figure.data[0].type == "image"


def test_page_shows_grid_observations_as_frames():
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["uploaded_datasets"] = {"grid.npz": _minigrid()}
    at.session_state["dataset"] = "upload: grid.npz"
    at.run()
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    first = json.loads(charts[0].proto.spec)
    assert [t["type"] for t in first["data"]] == ["image"] * 5   # episode 0 has 5 steps: 8 frames asked, 5 distinct
    assert "7×7×3 grids" in first["layout"]["title"]["text"]
    assert any("shown as pictures" in c.value for c in at.caption)
    at.selectbox(key="frame_count").set_value(4).run()
    assert len(json.loads(at.get("plotly_chart")[0].proto.spec)["data"]) == 4
