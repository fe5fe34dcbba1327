"""Export of 10 figures to PNG.

Ours: analysis.publish.export.write_figures, every image through one persistent kaleido server (one Chromium).
Naive twin: plotly's `write_image` per figure with no server running, which starts and stops a Chromium
for every call, after the same layout pass (analysis/publish/figures/fit.py) an export applies. Same figures, same size and scale: the PNGs must be identical in pixel size (bytes can
differ by embedded metadata, so the check is the decoded image shape and a pixel comparison).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bench.harness import row, timed


def _figures(n: int) -> dict:
    from analysis.publish.figures import episode_timeline, returns_histogram

    rng = np.random.default_rng(0)
    figs = {}
    for i in range(n):
        if i % 2:
            figs[f"hist{i}"] = returns_histogram(rng.normal(200, 80, 300), f"Episode returns, sample {i}")
        else:
            r = rng.random(120)
            figs[f"timeline{i}"] = episode_timeline(r, np.cumsum(r[::-1])[::-1], f"Episode {i}")
    return figs


def _pixels(path: Path) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB"))


def _bench(quick: bool) -> dict:
    from analysis.publish.export import DEFAULT_SCALE, DEFAULT_WIDTH, write_figures
    from analysis.publish.figures.fit import fit

    n = 3 if quick else 10
    figs = _figures(n)
    with tempfile.TemporaryDirectory() as tmp:
        ours_dir, naive_dir = Path(tmp, "ours"), Path(tmp, "naive")
        naive_dir.mkdir()
        def naive():
            for name, fig in figs.items():
                fitted = fit(fig, fig.layout.width or DEFAULT_WIDTH).figure
                fitted.write_image(naive_dir / f"{name}.png", width=fig.layout.width or DEFAULT_WIDTH,
                                   height=int(round(fitted.layout.height)), scale=DEFAULT_SCALE)

        ours_s, ours = timed(lambda: write_figures(figs, ours_dir, ("png",)))
        naive_s, _ = timed(naive)
        same = all(np.array_equal(_pixels(p), _pixels(naive_dir / p.name)) for p in ours)
    return row(naive_s, ours_s, same, figures=n)


BENCHMARKS = {"export_batch": _bench}
