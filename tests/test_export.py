"""Export: every format opens as what it claims to be, CSV round-trips the data behind the figure, a
bundle holds every file and a manifest whose remake commands parse, and a batch shares one Chromium."""
import io
import json
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis import catalog
from analysis.export import bundle, figure_bytes, write_figure, write_figures
from cli import build_parser
from trajectories import load_dataset

from conftest import ROOT


@pytest.fixture(scope="module")
def figured():
    ds = load_dataset(ROOT / "sample_data/datasets/cartpole.npz")
    return ds, catalog.make("episode_timeline", None, ds, episode=2)


def check_png(data: bytes, min_width=900):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data))
    assert img.width >= min_width and img.height > 300
    return np.asarray(img.convert("L"))


def test_every_format_is_valid(figured, tmp_path):
    ds, f = figured
    px = check_png(figure_bytes(f.figure, "png"))
    assert px.min() < 100 and px.max() > 200                          # something drawn on white
    root = ET.fromstring(figure_bytes(f.figure, "svg"))
    assert root.tag.endswith("svg")
    pdf = figure_bytes(f.figure, "pdf")
    assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-1024:]
    html = figure_bytes(f.figure, "html").decode()
    assert "<html>" in html and "Plotly.newPlot" in html and len(html) > 1_000_000     # plotly.js inline
    assert "<script src=\"http" not in html                                          # nothing fetched
    path = write_figure(f.figure, tmp_path / "t.csv", data=f.data)
    back = pd.read_csv(path)
    pd.testing.assert_frame_equal(back, f.data.reset_index(drop=True), check_dtype=False)
    assert back["return_to_go"].iloc[0] == ds.episode(2).returns_to_go[0]


def test_bad_format_gets_a_sentence(figured, tmp_path):
    _, f = figured
    with pytest.raises(ValueError, match="expected one of png, svg, pdf, html, csv"):
        write_figure(f.figure, tmp_path / "t.gif")
    with pytest.raises(ValueError, match="needs the data"):
        figure_bytes(f.figure, "csv")


def test_bundle_has_every_file_and_a_remakeable_manifest(figured):
    ds, f = figured
    hist = catalog.make("returns_histogram", None, ds, bins=12)
    z = zipfile.ZipFile(io.BytesIO(bundle([f, hist], dataset=ds, data_path="sample_data/datasets/cartpole.npz", page="Dataset")))
    names = set(z.namelist())
    assert names == {f"{n}.{x}" for n in ("episode_timeline", "returns_histogram") for x in ("png", "svg", "pdf", "html", "csv")} | {"manifest.json"}
    check_png(z.read("returns_histogram.png"))
    m = json.loads(z.read("manifest.json"))
    assert m["dataset"]["fingerprint"] == ds.fingerprint() and m["page"] == "Dataset"
    assert {"torch", "plotly", "kaleido", "python"} <= set(m["versions"])
    remake = {x["name"]: x for x in m["figures"]}
    assert remake["returns_histogram"]["params"] == {"bins": 12}
    argv = remake["returns_histogram"]["remake"].split()[2:]
    args = build_parser().parse_args(argv)
    assert args.figure == "returns_histogram" and args.param == ["bins=12"] and args.data.endswith("cartpole.npz")


def test_batch_writes_every_figure_through_one_server(figured, tmp_path):
    _, f = figured
    paths = write_figures({"a": f.figure, "b": f.figure}, tmp_path, ("png", "svg"))
    assert sorted(p.name for p in paths) == ["a.png", "a.svg", "b.png", "b.svg"]
    assert np.array_equal(check_png(paths[0].read_bytes()), check_png((tmp_path / "b.png").read_bytes()))
