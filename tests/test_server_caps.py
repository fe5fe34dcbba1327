"""Server-wide caps (issue 26, item 6): live games by count and memory, heavy analyses computed at once; each cap is
one sentence when hit (in code and on the page), and games that are dropped (a session ended) give back their thread
and their memory. Memory is measured in a fresh subprocess, so this process's other allocations do not count."""
import gc
import json
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import pytest

from analysis.core import cache
from analysis.core.cache import CACHE, BusyError, cached
from analysis.media.live import LiveError, LiveGame, live_games
from models.checkpoint import load_agent
from tests.test_page_attention import page

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "sample_data" / "agents"

# Made in a fresh process: a warm-up game loads gymnasium, pygame or MuJoCo and torch's kernels, then the baseline;
# `attempts` games are asked for (each played 20 steps and drawn), the cap refuses the rest; then all are dropped as a
# session's end drops them (the last reference goes) and the process is measured again.
GAMES = r"""
import gc, json, os, sys, threading, time
import torch
torch.set_num_threads(1)
from analysis.media.live import LiveError, LiveGame, live_games
from models.checkpoint import load_agent

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

agent = load_agent(sys.argv[1])
attempts = int(sys.argv[2])
g = LiveGame(agent, seed=99)
g.agent_acts(5)
why = g.render_why
g.close()
del g
gc.collect()
base, threads = rss(), threading.active_count()
games, refused = [], []
for i in range(attempts):
    try:
        g = LiveGame(agent, seed=i)
        g.agent_acts(20)
        g.frame()
        games.append(g)
    except LiveError as e:
        refused.append(str(e))
g = None
out = {"render_why": why, "made": len(games), "refused": refused, "threads_base": threads,
       "threads_playing": threading.active_count(), "charged": live_games()[1], "peak": rss() - base}
if "--at-cap" in sys.argv:   # at the cap: one more is refused; one closed, the next is made
    try:
        LiveGame(agent, seed=1000)
        out["at_cap"] = "made"
    except LiveError as e:
        out["at_cap"] = str(e)
    games.pop().close()
    games.append(LiveGame(agent, seed=1001))
    out["after_close"] = live_games()[0]
del games
gc.collect()
time.sleep(0.1)
out.update(threads_after=threading.active_count(), live_after=live_games(), retained=rss() - base)
print(json.dumps(out))
"""


def _games(agent: str, attempts: int, *flags, **env) -> dict:
    import os

    environ = {**os.environ, "PYTHONPATH": str(ROOT), **{k: str(v) for k, v in env.items()}}
    for k in ("SEQLENS_MAX_LIVE_GAMES", "SEQLENS_MAX_LIVE_GAME_BYTES"):
        if k not in env:
            environ.pop(k, None)
    r = subprocess.run([sys.executable, "-c", GAMES, str(AGENTS / agent), str(attempts), *flags], cwd=ROOT, env=environ,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_forty_games_stop_at_the_cap_and_dropped_games_leave_no_thread_or_memory():
    out = _games("cartpole-dt", 40, "--at-cap")
    assert out["made"] == 8 and len(out["refused"]) == 32, out
    assert set(out["refused"]) == {"The server is already playing 8 live games, its limit (SEQLENS_MAX_LIVE_GAMES); "
                                   "try again in a moment, when another session's game has ended."}
    assert out["threads_playing"] == out["threads_base"] + 8          # one thread per game, none for a refusal
    assert out["at_cap"].startswith("The server is already playing 8 live games")
    assert out["after_close"] == 8                                      # a closed game's place is free again
    assert out["threads_after"] == out["threads_base"] and out["live_after"] == [0, 0]
    assert out["retained"] < 150 << 20, out


def test_mujoco_games_give_their_memory_back_and_are_capped_by_it():
    """A Reacher game holds ~90 MB (MuJoCo's GL context); eight of them, dropped, left 229 MB of freed pages in glibc's
    arenas (forty: 1.1 GB) until the games' close trims them."""
    out = _games("reacher-dt", 8, SEQLENS_MAX_LIVE_GAMES=40)
    if out["render_why"] is not None:
        pytest.skip(f"MuJoCo cannot render here: {out['render_why']}")
    assert out["made"] == 8 and not out["refused"]
    assert out["peak"] > 8 * (50 << 20) and out["charged"] > 8 * (50 << 20)   # what a game is charged is what it holds
    assert out["threads_after"] == out["threads_base"] and out["live_after"] == [0, 0]
    assert out["retained"] < 150 << 20, out
    capped = _games("reacher-dt", 8, SEQLENS_MAX_LIVE_GAMES=40, SEQLENS_MAX_LIVE_GAME_BYTES=400 << 20)
    assert 2 <= capped["made"] <= 4 and len(capped["refused"]) == 8 - capped["made"], capped
    assert capped["charged"] <= 400 << 20
    assert all("past their limit of 400 MiB (SEQLENS_MAX_LIVE_GAME_BYTES)" in r for r in capped["refused"])


@pytest.fixture(scope="module")
def cartpole_dt():
    return load_agent(str(AGENTS / "cartpole-dt"))


def test_a_refused_or_failed_game_holds_no_place(cartpole_dt, monkeypatch):
    gc.collect()
    n0 = live_games()[0]
    monkeypatch.setenv("SEQLENS_MAX_LIVE_GAMES", str(n0 + 1))
    game = LiveGame(cartpole_dt, render=False)
    with pytest.raises(LiveError, match=f"already playing {n0 + 1} live games"):
        LiveGame(cartpole_dt, render=False)
    assert live_games()[0] == n0 + 1
    game.close()

    def broken(env_id, **kwargs):
        raise RuntimeError("no display")
    monkeypatch.setattr("analysis.media.frames.make_render_env", broken)
    with pytest.raises(RuntimeError):    # fails after its place was taken: the place is given back
        LiveGame(cartpole_dt)
    monkeypatch.undo()
    monkeypatch.setenv("SEQLENS_MAX_LIVE_GAMES", str(n0 + 1))
    for bad in ({"seed": 2**32}, {"seed": -1}, {"target": 1e300}, {"target": float("nan")}):   # refused before a place
        with pytest.raises(LiveError):
            LiveGame(cartpole_dt, render=False, **bad)
    assert live_games()[0] == n0
    game = LiveGame(cartpole_dt, render=False)
    del game
    gc.collect()
    assert live_games()[0] == n0


def test_the_page_says_when_the_server_plays_its_limit_and_an_ended_session_frees_its_game(monkeypatch):
    gc.collect()
    n0 = live_games()[0]
    monkeypatch.setenv("SEQLENS_MAX_LIVE_GAMES", str(n0 + 2))
    a = page("10_Live_play.py", "cartpole-dt", "cartpole")
    b = page("10_Live_play.py", "cartpole-dt", "cartpole")
    assert live_games()[0] == n0 + 2
    c = page("10_Live_play.py", "cartpole-dt", "cartpole")
    assert [e.value for e in c.error] == [f"The server is already playing {n0 + 2} live games, its limit "
                                          "(SEQLENS_MAX_LIVE_GAMES); try again in a moment, when another session's "
                                          "game has ended."]
    assert "live_game" not in c.session_state
    b.button(key="live_new").click().run()   # a new episode in a full server: the session's old game makes room
    assert not b.error and b.session_state["live_game"].t == 0 and live_games()[0] == n0 + 2
    played = weakref.ref(a.session_state["live_game"])
    del a   # the session ends: its state goes, and with it the game
    gc.collect()
    assert played() is None and live_games()[0] <= n0 + 1
    c.run()
    assert not c.error and c.session_state["live_game"].t == 0


def _hold(names, release: threading.Event, started: threading.Barrier):
    def work(name):
        cached(name, lambda: (started.wait(), release.wait(10), name)[-1])
    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    started.wait(10)
    return threads


def test_a_third_analysis_hears_the_server_is_busy_and_nested_ones_share_their_slot(monkeypatch):
    monkeypatch.setattr(cache, "BUSY_WAIT_S", 0.3)
    CACHE.clear()
    cached("already", lambda: "done")
    release, started = threading.Event(), threading.Barrier(3)
    threads = _hold([f"slow-{time.time()}-a", f"slow-{time.time()}-b"], release, started)
    try:
        t0 = time.monotonic()
        with pytest.raises(BusyError) as e:
            cached("third", lambda: "never")
        assert str(e.value) == ("The server is busy with 2 analyses, its limit (SEQLENS_MAX_HEAVY_ANALYSES); try again "
                                "in a moment.")
        assert 0.25 < time.monotonic() - t0 < 3
        assert cached("already", lambda: "recomputed") == "done"   # a cached result never waits
        monkeypatch.setenv("SEQLENS_MAX_HEAVY_ANALYSES", "3")      # read at each call
        assert cached("outer", lambda: cached("inner", lambda: 1) + cached("inner2", lambda: 2)) == 3
        monkeypatch.delenv("SEQLENS_MAX_HEAVY_ANALYSES")
        late = []                                                 # a caller that waits gets the slot freed meanwhile
        waiter = threading.Thread(target=lambda: late.append(cached("waited", lambda: "ok")))
        monkeypatch.setattr(cache, "BUSY_WAIT_S", 10)
        waiter.start()
        time.sleep(0.2)
        assert not late
    finally:
        release.set()
        for t in threads:
            t.join(10)
    waiter.join(10)
    assert late == ["ok"] and cache.HEAVY.active == 0


def test_the_page_says_when_the_server_is_busy(monkeypatch):
    monkeypatch.setattr(cache, "BUSY_WAIT_S", 0.3)
    CACHE.clear()
    release, started = threading.Event(), threading.Barrier(3)
    threads = _hold([f"busy-{time.time()}-a", f"busy-{time.time()}-b"], release, started)
    try:
        at = page("2_Attention.py", "cartpole-dt", "cartpole")
        assert [e.value for e in at.error] == ["The server is busy with 2 analyses, its limit "
                                               "(SEQLENS_MAX_HEAVY_ANALYSES); try again in a moment."]
    finally:
        release.set()
        for t in threads:
            t.join(10)
    at.run()
    assert not at.error and at.get("plotly_chart")
