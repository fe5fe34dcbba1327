"""Export: every format opens as what it claims to be, CSV round-trips the data behind the figure, a
bundle holds every file and a manifest whose remake commands parse, and a batch shares one Chromium."""
import io
import json
import shlex
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis.publish import catalog
from analysis.publish.export import bundle, figure_bytes, write_figure, write_figures
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


# ---- remake lines for a variant made by Home's choices (issue 13) ------------------------------------------------
def _bare_cartpole_dt(directory):
    """The shipped CartPole DT stripped of its environment and state statistics (as an HF import arrives)."""
    from dataclasses import replace

    from models import load_agent, save_agent

    agent = load_agent(ROOT / "sample_data/agents/cartpole-dt")
    agent.config = replace(agent.config, env_id=None, state_mean=None, state_std=None)
    save_agent(agent, directory)
    return directory


def _remade_csv(line: str, out, monkeypatch) -> bytes:
    """Run a manifest's remake line through cli.main, writing CSV to `out`."""
    import shlex

    import cli

    argv = shlex.split(line)
    assert argv[:3] == ["python", "cli.py", "export"]
    argv = argv[2:]
    argv[argv.index("--format") + 1] = "csv"
    argv[argv.index("--out") + 1] = str(out)
    monkeypatch.chdir(ROOT)                     # the line names shipped files relative to the repository
    assert cli.main(argv) == 0
    return out.read_bytes()


def test_a_twin_bundle_remakes_the_same_figure(tmp_path, monkeypatch):
    from models import load_agent
    import shlex

    from models.env_choice import dataset_statistics, input_choices, with_env, with_inputs
    from ui.data import dataset_path

    path = _bare_cartpole_dt(tmp_path / "bare")
    agent = load_agent(path)
    ds = load_dataset(ROOT / "sample_data/datasets/cartpole.npz")
    # what ui.agents.agent_in_session makes: env chosen, statistics of the dataset named "cartpole", scale changed
    variant = with_inputs(with_inputs(with_env(agent, "CartPole-v1", name="bare"), *dataset_statistics(ds), source="cartpole"),
                       rtg_scale=400.0)
    assert input_choices(agent) == {} and input_choices(variant) == {
        "env": "CartPole-v1", "normalize_from": "cartpole", "normalize_path": None, "rtg_scale": 400.0}
    f = catalog.make("rtg_shift_replay", variant, ds, episode=1)
    z = zipfile.ZipFile(io.BytesIO(bundle([f], formats=("csv",), agent=variant, dataset=ds, agent_path=path,
                                          data_path="sample_data/datasets/cartpole.npz", page="Attention",
                                          dataset_paths=dataset_path)))
    m = json.loads(z.read("manifest.json"))
    line = m["figures"][0]["remake"]
    assert m["agent"]["remake_options"] == ["--env", "CartPole-v1", "--normalize-from", "sample_data/datasets/cartpole.npz",
                                            "--rtg-scale", "400.0"]
    assert m["agent"]["inputs"] == "state normalisation from cartpole; return-to-go scale 400" and "notes" not in m["agent"]
    args = build_parser().parse_args(shlex.split(line)[2:])
    assert (args.env, args.normalize_from, args.rtg_scale, args.raw_inputs) == ("CartPole-v1", "sample_data/datasets/cartpole.npz", 400.0, False)
    want = z.read("rtg_shift_replay.csv")
    assert _remade_csv(line, tmp_path / "remade.csv", monkeypatch) == want
    # the options matter: the checkpoint as it is (raw observations, scale 500) gives another figure
    plain = line.replace(" ".join(m["agent"]["remake_options"]) + " ", "")
    assert "--rtg-scale" not in plain and _remade_csv(plain, tmp_path / "plain.csv", monkeypatch) != want


def test_raw_inputs_and_unnamed_statistics_in_remake_lines(tmp_path, monkeypatch):
    import cli
    from analysis.publish.export import input_flags
    from models import load_agent
    from models.env_choice import dataset_statistics, with_inputs, without_normalization

    shipped = ROOT / "sample_data/agents/cartpole-dt"
    ds = load_dataset(ROOT / "sample_data/datasets/cartpole.npz")
    raw = without_normalization(load_agent(shipped))
    assert input_flags(raw) == (["--raw-inputs"], [])
    f = catalog.make("rtg_shift_replay", raw, ds, episode=1)
    z = zipfile.ZipFile(io.BytesIO(bundle([f], formats=("csv",), agent=raw, dataset=ds, agent_path=shipped,
                                          data_path="sample_data/datasets/cartpole.npz")))
    line = json.loads(z.read("manifest.json"))["figures"][0]["remake"]
    assert "--raw-inputs" in line.split()
    assert _remade_csv(line, tmp_path / "raw.csv", monkeypatch) == z.read("rtg_shift_replay.csv")
    # statistics from an upload have no file: the label stands in, with a sentence in the manifest
    up = with_inputs(load_agent(shipped), *dataset_statistics(ds), source="upload: mine.npz")
    flags, notes = input_flags(up, lambda name: None)
    assert flags == ["--normalize-from", "upload: mine.npz"] and "has no file to name" in notes[0]
    # the command line records the path it was given; --normalize-from after --raw-inputs is one sentence
    variant = cli._with_env(load_agent(_bare_cartpole_dt(tmp_path / "bare")), "CartPole-v1",
                         "sample_data/datasets/cartpole.npz", 250.0)
    assert input_flags(variant)[0] == ["--env", "CartPole-v1", "--normalize-from", "sample_data/datasets/cartpole.npz",
                                    "--rtg-scale", "250.0"]
    with pytest.raises(cli.UserError, match="contradict"):
        cli._with_env(load_agent(shipped), None, "sample_data/datasets/cartpole.npz", raw_inputs=True)


def test_an_environment_only_figure_names_no_dataset_in_its_manifest(figured):
    """A return-to-go sweep runs the agent in its environment (the dataset only suggested the targets, which the
    params name): its manifest names no dataset and its remake line takes no --data; beside a dataset figure, the
    bundle names the dataset and only that figure's line carries it."""
    from analysis.publish.export import manifest
    from models import load_agent

    ds, timeline = figured
    agent_path = "sample_data/agents/cartpole-dt"
    agent = load_agent(ROOT / agent_path)
    sweep = catalog.make("rtg_sweep_returns", agent, ds, targets=[20.0], episodes=1)
    assert sweep.uses_dataset is False and timeline.uses_dataset is True
    m = manifest([sweep], agent=agent, dataset=ds, agent_path=agent_path, data_path="sample_data/datasets/cartpole.npz")
    assert "dataset" not in m and m["agent"]["env_id"] == "CartPole-v1"
    (entry,) = m["figures"]
    assert entry["computed_from"] == ["agent", "environment"] and entry["params"]["targets"] == [20.0]
    args = build_parser().parse_args(shlex.split(entry["remake"])[2:])
    assert args.data is None and args.agent == agent_path and "targets=[20.0]" in args.param
    both = manifest([sweep, timeline], agent=agent, dataset=ds, agent_path=agent_path,
                    data_path="sample_data/datasets/cartpole.npz")
    assert both["dataset"]["fingerprint"] == ds.fingerprint()
    lines = {f["name"]: f for f in both["figures"]}
    assert "--data" not in shlex.split(lines["rtg_sweep_returns"]["remake"])
    assert lines["episode_timeline"]["computed_from"] == ["agent", "dataset"]
    assert build_parser().parse_args(lines["episode_timeline"]["remake"].split()[2:]).data.endswith("cartpole.npz")
