"""One figure made headless, from a request in the words of `cli.py export` (figure name, agent and dataset paths,
format, parameters, input choices, a second agent to compare): every check on the request, in one place, before
anything is drawn, then the figure (or its comparison), written as an image, a table, a video or a bundle.

The command line parses its options and calls `export_figure`; anything wrong with the request is one sentence
(ExportError). `figure_list()` is what `cli.py export --list` prints.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Callable, Iterable, Mapping

from trajectories.samples import SAMPLE_DIR


class ExportError(ValueError):
    """Something wrong with an export request: one sentence for the user."""


def figure_list() -> list[dict]:
    """Every figure the pages draw, by name: {name, description, needs_agent}."""
    from analysis.publish import catalog

    return [{"name": e.name, "description": e.description, "needs_agent": e.needs_agent}
            for e in catalog.figures().values()]


def parse_pairs(items: Iterable[str] | None, flag: str) -> dict:
    """Repeated KEY=VALUE options; values are JSON where they parse (numbers, lists, null), else strings."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ExportError(f"{flag} expects KEY=VALUE, got '{item}'.")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def default_data(agent):
    """An agent trained on a shipped dataset gets that dataset when no dataset is given."""
    name = agent.config.dataset.get("name")
    path = SAMPLE_DIR / f"{Path(name).stem}.npz" if name else None
    return path if path is not None and path.exists() else None


def _choices(agent, env, normalize_from, rtg_scale, raw_inputs):
    from models.env_choice import with_choices
    from models.errors import AgentError

    try:
        return with_choices(agent, env, normalize_from, rtg_scale, raw_inputs)
    except AgentError as e:
        raise ExportError(str(e)) from None


def compare_agent(compare: str, agent, dataset, agent_path, env=None, normalize_from=None, raw_inputs=False) -> dict:
    """The second agent of a comparison: the checkpoint at `compare`, or "randomized" (the first agent with its
    weights re-initialised, seed 0: analysis.publish.compare_mode.randomized_agent), with the first agent's `env`
    (where it names no environment it can act in), `normalize_from` and `raw_inputs`; its own return-to-go scale.
    {agent, name, path} for compare and the bundle. One sentence when it cannot read the dataset."""
    from analysis.publish.compare_mode import RANDOMIZED, CompareError, check_pair, randomized_agent
    from models import load_agent
    from models.env_choice import can_act

    first = Path(agent_path).name
    if compare == RANDOMIZED:
        return {"agent": randomized_agent(agent), "name": f"randomized copy of {first}", "path": RANDOMIZED}
    other = load_agent(compare)
    env = env if env and not (can_act(other) and not getattr(other, "notes", None)) else None
    other = _choices(other, env, normalize_from, None, raw_inputs)
    name = Path(compare).name
    try:
        check_pair(agent, other, dataset, first, f"--compare {name}")
    except CompareError as e:
        raise ExportError(str(e)) from None
    return {"agent": other, "name": name, "path": compare}


def export_figure(figure: str | None, out, agent: str | None = None, data: str | None = None, fmt: str | None = None,
                  params: Mapping | Iterable[str] | None = None, env: str | None = None, normalize_from=None,
                  rtg_scale: float | None = None, raw_inputs: bool = False, compare: str | None = None,
                  note: Callable[[str], None] = lambda text: None) -> dict:
    """Make figure `figure` and write it to `out`: as `fmt` (default: from out's suffix) — png, svg, pdf, html or
    csv for a still figure, gif or mp4 for an animated one, zip for a bundle with its manifest. `agent` and `data`
    are paths (the agent's shipped training dataset when data is left out; an animation that rolls out acts in the
    agent's environment instead); `params` the figure's parameters (a mapping, or KEY=VALUE strings as --param
    gives them); env / normalize_from / rtg_scale / raw_inputs the input choices (models.env_choice.with_choices);
    `compare` a second agent (a path, or "randomized"). `note(text)` hears what the encoder says about a video.
    Returns what was written: {figure, format, out, params, agent, compare, data, rows} (+ a video's frames, width,
    height, fps, bytes, notes). Everything wrong with the request is one sentence (ExportError), checked before
    anything is drawn; an agent or dataset that cannot be read raises its own AgentError / DatasetError."""
    from analysis.publish import catalog

    entries = catalog.figures()
    if not figure or not out:
        raise ExportError("export needs --figure NAME and --out FILE (or --list to see the figures).")
    if figure not in entries:
        raise ExportError(f"unknown figure '{figure}'; known figures: {', '.join(entries)}.")
    entry = entries[figure]
    params = dict(params) if isinstance(params, Mapping) else parse_pairs(params, "--param")
    accepted = [p for p in inspect.signature(entry.make).parameters if p not in ("agent", "dataset")]
    if compare:   # how B's axes relate to A's (analysis/publish/compare_mode.py)
        accepted.append("axes")
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ExportError(f"figure '{figure}' takes {', '.join(accepted) or 'no parameters'}; not {', '.join(unknown)}.")
    from analysis.publish.export import FORMATS, VIDEO_FORMATS, bundle, write_figure
    from models import load_agent
    from trajectories import load_dataset

    out = Path(out)
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if entry.formats and fmt not in (*entry.formats, "zip"):   # an animation is written only in its own formats
        raise ExportError(f"figure '{figure}' is an animation: export it as {' or '.join(entry.formats)} (or zip, "
                          f"a bundle), not '{fmt or '(none)'}'.")
    if not entry.formats and fmt in VIDEO_FORMATS:
        animated = ", ".join(e.name for e in entries.values() if e.formats)
        raise ExportError(f"figure '{figure}' is a still figure and {fmt} is for animated ones ({animated}); "
                          f"expected one of {', '.join(FORMATS)} or zip (a bundle).")
    if entry.formats and compare:
        raise ExportError(f"figure '{figure}' animates one agent's episode, so it takes no --compare.")
    if not agent and (env or normalize_from or raw_inputs or rtg_scale is not None):
        raise ExportError("--env, --normalize-from, --raw-inputs and --rtg-scale apply to an agent (--agent DIR).")
    if compare and not entry.needs_agent:
        raise ExportError(f"figure '{figure}' draws the dataset alone, so --compare has no second agent to draw; it "
                          "applies to the figures of an agent (those listed as 'agent + data' by --list).")
    if compare and not agent:
        raise ExportError("--compare adds a second agent beside the first: give the first with --agent DIR.")
    agent_path = agent
    agent = _choices(load_agent(agent_path), env, normalize_from, rtg_scale, raw_inputs) if agent_path else None
    if entry.needs_agent and agent is None:
        raise ExportError(f"figure '{figure}' needs an agent (--agent DIR).")
    # a figure that rolls out (episode_video) acts in the agent's environment when no dataset is given
    data_path = data or (default_data(agent) if agent is not None and not entry.rolls_out else None)
    if data_path is None and not (entry.rolls_out and agent is not None):
        raise ExportError(f"figure '{figure}' needs a dataset (--data PATH)"
                          + (" or an agent to roll out in its environment (--agent DIR)." if entry.rolls_out else "."))
    dataset = load_dataset(data_path) if data_path is not None else None
    if agent is not None and dataset is not None:
        from models.checks import check_dataset

        check_dataset(agent, dataset)
    if fmt != "zip" and fmt not in (*FORMATS, *entry.formats):
        raise ExportError(f"cannot export as '{fmt or '(none)'}'; expected one of {', '.join(FORMATS)} or zip (a bundle).")
    from analysis.publish.compare_mode import CompareError, compare as compare_figure

    other = (compare_agent(compare, agent, dataset, agent_path, env, normalize_from, raw_inputs)
             if compare else None)
    try:
        if other is not None:
            figured = compare_figure(figure, agent, other["agent"], dataset, Path(agent_path).name, other["name"],
                                     **params)
        else:
            figured = catalog.make(figure, agent, dataset, **params)
    except CompareError as e:
        raise ExportError(str(e)) from None
    except (ValueError, IndexError) as e:
        raise ExportError(f"figure '{figure}': {e}") from None
    extra = {}
    if fmt == "zip":
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            data_bytes = bundle([figured], agent=agent, dataset=dataset, agent_path=agent_path, data_path=data_path,
                                page="cli", compare=other)
        except ValueError as e:   # an animation of an episode no frame can be drawn of: the sentence saying why
            raise ExportError(f"figure '{figure}': {e}") from None
        out.write_bytes(data_bytes)
    elif figured.video is not None:
        try:
            enc = figured.video.encode(fmt)
        except ValueError as e:
            raise ExportError(f"figure '{figure}': {e}") from None
        target = out.with_suffix(f".{fmt}") if out.suffix.lstrip(".").lower() != fmt else out
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(enc.data)
        extra = {"frames": enc.n_frames, "width": enc.width, "height": enc.height, "fps": enc.fps,
                 "bytes": len(enc.data), "notes": enc.notes}
        for text in enc.notes:
            note(text)
    else:
        write_figure(figured.figure, out.with_suffix(f".{fmt}") if out.suffix.lstrip(".").lower() != fmt else out,
                     data=figured.data)
    return {"figure": figure, "format": fmt, "out": str(out), "params": figured.params,
            "agent": str(agent_path) if agent_path else None, "compare": compare,
            "data": str(data_path) if data_path is not None else None, "rows": int(len(figured.data)), **extra}
