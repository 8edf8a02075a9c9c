"""Feature pool workers exit when the process that started them dies (even by SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import write

SRC = str(Path(__file__).resolve().parents[1] / "src")
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def _ppid_map() -> dict[int, int]:
    """``{pid: parent pid}`` of every live (non-zombie) process, from /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if fields[0] != "Z":
            out[int(entry)] = int(fields[1])
    return out


def _descendants(root: int) -> tuple[set[int], int]:
    """Live descendants of ``root`` (resource tracker, fork server, its pool workers), and how
    many of them are grandchildren (pool workers: children of the fork server)."""
    parents = _ppid_map()
    found, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found, sum(1 for p in found if parents.get(p) != root)


def _alive(pids: set[int]) -> set[int]:
    return pids & set(_ppid_map())


def test_sigkill_of_features_leaves_no_pool_worker(tmp_path: Path) -> None:
    g = np.random.default_rng(0)
    for c in ("a", "b"):
        for i in range(24):
            write(tmp_path / "d" / c / f"{i}.wav", (0.1 * g.standard_normal(3 * 22050)).astype(np.float32), 22050)
    cmd = [sys.executable, "-c", "import sys; from cultural_music.cli import main; sys.exit(main())", "features",
           str(tmp_path / "d"), "--duration", "1", "--workers", "2", "-q", "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        n_workers = 0
        while time.monotonic() < deadline and proc.poll() is None and n_workers < 2:
            found, n_workers = _descendants(proc.pid)
            seen |= found
            time.sleep(0.05)
        assert proc.poll() is None, "features finished before its workers could be seen; give it more files"
        assert n_workers >= 2, f"no pool workers appeared: {seen}"
        seen |= _descendants(proc.pid)[0]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 8
        while _alive(seen) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(seen), f"process(es) {sorted(_alive(seen))} of the pool outlived the killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _alive(seen):  # bounded and self-cleaning, also when the assertion fails
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
