"""Figure export: PNG, SVG, PDF through kaleido (Debian's Chromium), standalone HTML, and the CSV of the
data behind a figure; batches through one persistent kaleido server; zip bundles with a manifest that
says how to remake every figure.

kaleido 1.x starts a Chromium per `write_image` unless a sync server is running: `export_session()`
keeps one alive for a batch (bench export_batch measures the difference).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import platform
import shlex
import warnings
import zipfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from analysis.publish.figures.fit import fit

IMAGE_FORMATS = ("png", "svg", "pdf")
FORMATS = IMAGE_FORMATS + ("html", "csv")
VIDEO_FORMATS = ("gif", "mp4")   # animated figures only (episode_video: Figured.video), through analysis/media/video.py
MIME = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf", "html": "text/html",
        "csv": "text/csv", "zip": "application/zip", "gif": "image/gif", "mp4": "video/mp4"}
DEFAULT_WIDTH, DEFAULT_SCALE = 900, 2.0


MAX_SIDE, MAX_SCALE = 8_192, 8.0   # an image export's pixels per side (before scale), and its scale


def _size(fig: go.Figure, width: int | None, height: int | None, scale: float = DEFAULT_SCALE) -> tuple[int, int]:
    """The image's width and height in pixels (a width or height asked for: 16..MAX_SIDE; else the figure's own) and
    the scale 0.1..MAX_SCALE, else one sentence."""
    out = []
    for name, v, own in (("width", width, fig.layout.width or DEFAULT_WIDTH), ("height", height,
                                                                             fig.layout.height or 450)):
        if v is None:
            out.append(int(own))   # the figure's layout (a tall one grows with its rows)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 16 <= v <= MAX_SIDE:
            raise ValueError(f"image {name} must be between 16 and {MAX_SIDE} pixels, got {v!r}.")
        out.append(int(v))
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) \
            or not 0.1 <= scale <= MAX_SCALE:
        raise ValueError(f"image scale must be between 0.1 and {MAX_SCALE:g}, got {scale!r}.")
    return out[0], out[1]


def _check_format(fmt: str) -> str:
    fmt = fmt.lower().lstrip(".")
    if fmt in VIDEO_FORMATS:
        raise ValueError(f"cannot export a still figure as '{fmt}' (gif and mp4 are for animated figures such as "
                         f"episode_video); expected one of {', '.join(FORMATS)}.")
    if fmt not in FORMATS:
        raise ValueError(f"cannot export a figure as '{fmt or '(none)'}'; expected one of {', '.join(FORMATS)}.")
    return fmt


def figured_bytes(figured, fmt: str) -> bytes:
    """One catalog Figured in one format: an animated one (Figured.video) as gif, mp4 or the csv of its data; a still
    one through figure_bytes. Any other pairing is one sentence (ValueError)."""
    fmt = str(fmt).lower().lstrip(".")
    if getattr(figured, "video", None) is None:
        return figure_bytes(figured.figure, fmt, data=figured.data)
    if fmt == "csv":
        return figured.data.to_csv(index=False).encode()
    if fmt not in VIDEO_FORMATS:
        raise ValueError(f"figure '{figured.name}' is an animation: it is exported as {' or '.join(VIDEO_FORMATS)} "
                         f"(and its data as csv), not '{fmt or '(none)'}'.")
    return figured.video.encode(fmt).data


def _bundle_formats(figured, formats) -> list[str]:
    """A still figure's formats minus the video ones; an animation's video formats (both when none is asked) and
    its csv where asked."""
    if getattr(figured, "video", None) is None:
        return [f for f in formats if f not in VIDEO_FORMATS]
    videos = [f for f in formats if f in VIDEO_FORMATS] or list(VIDEO_FORMATS)
    return videos + (["csv"] if "csv" in formats else [])


def figure_bytes(fig: go.Figure, fmt: str, width: int | None = None, height: int | None = None,
                 scale: float = DEFAULT_SCALE, data=None) -> bytes:
    """One figure in one format, as bytes (what a download button serves). csv needs `data` (a DataFrame)."""
    fmt = _check_format(fmt)
    if fmt == "html":   # laid out for the figure's own width (the page's pass, figures/fit.py, without cutting the title)
        fig = fit(fig, fig.layout.width or DEFAULT_WIDTH).figure
        return pio.to_html(fig, include_plotlyjs=True, full_html=True).encode()
    if fmt == "csv":
        if data is None:
            raise ValueError("a CSV export needs the data behind the figure.")
        return data.to_csv(index=False).encode()
    w, h = _size(fig, width, height, scale)
    fig = fit(fig, w, keep_height=height is not None).figure   # text wrapped to the image's width, margins to match
    h = h if height is not None else int(round(fig.layout.height))
    with warnings.catch_warnings():   # plotly passes its plotly.js path on every call; a running server has it
        warnings.filterwarnings("ignore", message="The kopts argument is ignored if using a server")
        try:
            return pio.to_image(fig, format=fmt, width=w, height=h, scale=scale)
        except RuntimeError as e:
            if "chrome" not in str(e).lower():
                raise
            # plotly's advice would download a browser; seqlens uses Debian's
            raise RuntimeError(f"{fmt.upper()} export needs Debian's chromium (run `make chromium`); "
                               "HTML and CSV export work without it.") from None


def write_figure(fig: go.Figure, path, width: int | None = None, height: int | None = None,
                 scale: float = DEFAULT_SCALE, data=None) -> Path:
    """Write by file suffix: .png .svg .pdf .html (.csv with `data`)."""
    path = Path(path)
    fmt = _check_format(path.suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(figure_bytes(fig, fmt, width, height, scale, data))
    return path


_SERVER_OWNER = False


@contextlib.contextmanager
def export_session():
    """One Chromium (kaleido sync server) for every image exported inside the block."""
    import kaleido

    global _SERVER_OWNER
    started = False
    if not _SERVER_OWNER:
        kaleido.start_sync_server(silence_warnings=True)
        started = _SERVER_OWNER = True
    try:
        yield
    finally:
        if started:
            kaleido.stop_sync_server(silence_warnings=True)
            _SERVER_OWNER = False


def keep_server_alive() -> None:
    """For a long-lived process (the dashboard): start the kaleido server once and leave it running."""
    import kaleido

    global _SERVER_OWNER
    if not _SERVER_OWNER:
        kaleido.start_sync_server(silence_warnings=True)
        _SERVER_OWNER = True


def write_figures(figures: dict[str, go.Figure], out_dir, formats=("png",), scale: float = DEFAULT_SCALE) -> list[Path]:
    """Many figures through one kaleido server: out_dir/NAME.FORMAT for each."""
    out_dir = Path(out_dir)
    paths = []
    with export_session():
        for name, fig in figures.items():
            for fmt in formats:
                paths.append(write_figure(fig, out_dir / f"{name}.{_check_format(fmt)}", scale=scale))
    return paths


# ---- bundles -------------------------------------------------------------------------------------------
def _commit() -> str | None:
    import subprocess

    try:
        res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return res.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    out = {"seqlens": _commit(), "python": platform.python_version()}
    for pkg in ("numpy", "torch", "plotly", "kaleido", "pandas", "captum", "umap-learn", "streamlit"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def input_flags(agent, dataset_paths=None) -> tuple[list[str], list[str]]:
    """The `cli.py export` options that make, from the checkpoint, the variant the figures were made with (the
    environment, normalisation and return-to-go scale chosen on Home or on the command line, recorded by
    models.env_choice), and a sentence for each choice a command line cannot carry. dataset_paths(label) ->
    path finds the file of statistics recorded by label only (Home records the dataset's name)."""
    from models.env_choice import input_choices

    choices = input_choices(agent) if agent is not None else {}
    flags, notes = [], []
    if choices.get("env"):
        flags += ["--env", str(choices["env"])]
    if choices.get("raw_inputs"):
        flags += ["--raw-inputs"]
    elif choices.get("normalize_from"):
        label = choices["normalize_from"]
        path = choices.get("normalize_path") or (dataset_paths(label) if dataset_paths is not None else None)
        flags += ["--normalize-from", str(path or label)]
        if not path:
            notes.append(f"The state statistics came from {label}, which has no file to name: replace "
                         f"--normalize-from {label} with the path of that dataset.")
    if choices.get("rtg_scale") is not None:
        flags += ["--rtg-scale", repr(float(choices["rtg_scale"]))]
    return flags, notes


def remake_command(name: str, params: dict, agent_path=None, data_path=None, fmt: str = "svg",
                   inputs: list[str] | tuple = (), compare: str | None = None) -> str:
    """The `cli.py export` line that remakes a figure; `inputs` are the agent's options (input_flags). A compared
    figure (params["compare"], analysis/publish/compare_mode.py) gets `--compare` with `compare` (the second agent's path, or
    "randomized"), else the name it was shown under."""
    parts = ["python", "cli.py", "export", "--figure", name]
    if agent_path:
        parts += ["--agent", str(agent_path), *inputs]
    if "compare" in params:
        parts += ["--compare", str(compare or params["compare"])]
    if data_path:
        parts += ["--data", str(data_path)]
    for k, v in params.items():
        if k == "compare":
            continue
        parts += ["--param", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    parts += ["--format", fmt, "--out", f"{name}.{fmt}"]
    return shlex.join(parts)


def _agent_entry(agent, path, inputs: list[str]) -> dict:
    from models.env_choice import input_choices, normalization_label

    c = agent.config
    return {"path": str(path) if path else None, "kind": c.kind, "env_id": c.env_id,
            "context_length": c.context_length, "trained_on": c.dataset.get("name"),
            "trained_on_fingerprint": c.dataset.get("fingerprint"), "n_params": agent.n_params,
            "rtg_scale": c.rtg_scale, "inputs": normalization_label(agent),
            "choices": input_choices(agent), "remake_options": inputs}


def _compare_flags(first_inputs: list[str], second) -> list[str]:
    """The input options `cli.py export --compare` gives the second agent from the first one's: --env where it needs
    one (the page gave it one), --normalize-from / --raw-inputs as given; not --rtg-scale (each agent keeps its own)."""
    from models.env_choice import input_choices

    out, i = [], 0
    while i < len(first_inputs):
        flag = first_inputs[i]
        takes = flag in ("--env", "--normalize-from", "--rtg-scale")
        if flag != "--rtg-scale" and (flag != "--env" or input_choices(second).get("env")):
            out += first_inputs[i:i + (2 if takes else 1)]
        i += 2 if takes else 1
    return out


def _computed_from(f, agent, dataset) -> list[str]:
    """What one figure was made from: "agent", "dataset" (the manifest's), "environment" (the agent's, acting)."""
    used = getattr(f, "uses_dataset", True) and dataset is not None
    return (["agent"] if agent is not None else []) + (["dataset"] if used else ["environment"] if agent is not None
                                                      else [])


def manifest(figured: list, agent=None, dataset=None, agent_path=None, data_path=None, page: str | None = None,
             dataset_paths=None, compare: dict | None = None) -> dict:
    """What made a bundle: agent (with the choices that made the variant in use), dataset, each figure's parameters
    and remake command, versions. compare: the second agent of compare mode ({agent, name, path}: path is what
    `--compare` takes, a checkpoint or "randomized"; None for an upload), named under "compare"."""
    m = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "page": page, "versions": versions()}
    inputs = []
    if agent is not None:
        inputs, notes = input_flags(agent, dataset_paths)
        m["agent"] = _agent_entry(agent, agent_path, inputs)
        if notes:
            m["agent"]["notes"] = notes
    remake_compare = None
    if compare is not None and compare.get("agent") is not None:
        other = compare["agent"]
        randomized = compare.get("path") == "randomized"
        own, notes = input_flags(other, dataset_paths)
        m["compare"] = {"name": compare.get("name"), **_agent_entry(other, compare.get("path"), own),
                        "randomized_from": getattr(other, "__dict__", {}).get("randomized_from")}
        remake_compare = compare.get("path") or compare.get("name")
        if not compare.get("path"):
            notes.append(f"{compare.get('name')} has no file to name (an upload): replace --compare "
                         f"'{remake_compare}' with the path of its checkpoint.")
        carried = _compare_flags(inputs, other)
        if not randomized and own != carried:
            notes.append(f"{compare.get('name')} used the inputs {' '.join(own) or '(as loaded)'}, which --compare does "
                         f"not carry (it gives the second agent {' '.join(carried) or 'nothing'}).")
        if notes:
            m["compare"]["notes"] = notes
    # a dataset only where a figure was computed from it (a return-to-go sweep or a rollout runs in the environment)
    if dataset is not None and any(getattr(f, "uses_dataset", True) for f in figured):
        m["dataset"] = {"path": str(data_path) if data_path else None, "source": dataset.source,
                        "fingerprint": dataset.fingerprint(), "n_episodes": dataset.n_episodes,
                        "n_transitions": dataset.n_transitions}
    m["figures"] = [{"name": f.name, "params": f.params, "computed_from": _computed_from(f, agent, dataset),
                     "remake": remake_command(f.name, f.params, agent_path,
                                              data_path if getattr(f, "uses_dataset", True) else None, inputs=inputs,
                                              compare=remake_compare)}
                    for f in figured]
    return m


def bundle(figured: list, formats=FORMATS, agent=None, dataset=None, agent_path=None, data_path=None,
           page: str | None = None, dataset_paths=None, compare: dict | None = None) -> bytes:
    """A zip: every figure in every format (NAME.png, NAME.svg, ..., NAME.csv) and manifest.json; an animated figure
    (episode_video) as NAME.gif and NAME.mp4 (those of `formats`, else both) and its csv.
    dataset_paths: see input_flags; compare: see manifest."""
    formats = [f.lower().lstrip(".") if f.lower().lstrip(".") in VIDEO_FORMATS else _check_format(f) for f in formats]
    buf = io.BytesIO()
    # Chromium only when a still figure's image is asked for
    images = any(fmt in IMAGE_FORMATS for f in figured for fmt in _bundle_formats(f, formats))
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z, (export_session() if images else contextlib.nullcontext()):
        for f in figured:
            for fmt in _bundle_formats(f, formats):
                z.writestr(f"{f.name}.{fmt}", figured_bytes(f, fmt))
        z.writestr("manifest.json", json.dumps(manifest(figured, agent, dataset, agent_path, data_path, page, dataset_paths,
                                                        compare), indent=2, default=str))
    return buf.getvalue()
