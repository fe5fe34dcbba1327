import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trajectories import Dataset  # noqa: E402

try:  # tiny models on 2 shared cores: a second OpenMP thread mostly waits for the first (30x slower seen)
    import torch

    torch.set_num_threads(1)
except ImportError:
    pass


def zip_agent_dir(directory) -> bytes:
    """An agent directory as a browser upload of it arrives: a zip with one folder."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(Path(directory).iterdir()):
            zf.write(f, f"agent/{f.name}")
    return buf.getvalue()


def page_texts(at) -> str:
    """Everything an AppTest page would send: every element's protobuf as text (values, specs, messages)."""
    out, stack = [], [at._tree]
    while stack:
        node = stack.pop()
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            stack.extend(children.values())
    return "\n".join(out)


@pytest.fixture
def one_thread():
    """torch at one thread for the test, the previous count restored after it."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_discrete() -> Dataset:
    """Three hand-made episodes (lengths 3, 4, 2) with known returns 6, 4, -1."""
    obs = np.arange(18, dtype=np.float32).reshape(9, 2) / 4
    actions = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1])
    rewards = np.array([1, 2, 3, 1, 1, 1, 1, -2, 1], dtype=np.float32)
    terminated = np.array([0, 0, 1, 0, 0, 0, 0, 0, 1], bool)
    truncated = np.array([0, 0, 0, 0, 0, 0, 1, 0, 0], bool)
    return Dataset(obs, actions, rewards, terminated, truncated, np.array([0, 3, 7]),
                   obs_names=["x", "v"], env_id="CartPole-v1", source="tiny")


@pytest.fixture
def tiny_continuous() -> Dataset:
    rng = np.random.default_rng(7)
    n = 12
    return Dataset(rng.normal(size=(n, 3)).astype(np.float32), rng.uniform(-2, 2, size=(n, 2)).astype(np.float32),
                   rng.normal(size=n).astype(np.float32), np.zeros(n, bool), np.eye(1, n, 4, dtype=bool)[0] | np.eye(1, n, 11, dtype=bool)[0],
                   np.array([0, 5]), env_id="Pendulum-v1", source="tiny-cont")


def fit(model, data, steps: int, rng, batch_size: int = 32, lr: float = 3e-3) -> list[dict]:
    """A bare AdamW loop over model.sample_batch / model.loss; returns each step's metrics."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    history = []
    data = model.prepare_training(data)
    for _ in range(steps):
        loss, metrics = model.loss(model.sample_batch(data, batch_size, rng))
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(metrics)
    return history


@pytest.fixture(scope="session")
def streamlit_url():
    """The `make app` server (bench.browser_pages.streamlit_server) every browser test module shares: started once
    (15 s on 2 cores), its caches warm from one module to the next. Sessions are per browser tab, so tests stay apart
    by opening their own tab or browser context; a test that needs a server no request has reached starts its own.
    The browsers stay per module: Playwright's sync API cannot run inside another's (tests/test_compare.py and
    tests/test_page_player.py start their own)."""
    from bench.browser_pages import streamlit_server

    try:
        with streamlit_server(start_timeout=120) as (url, _):
            yield url
    except RuntimeError as e:   # the server's own output, not a bare timeout
        pytest.fail(str(e))
