"""Labelling on a local process pool: ``predict --out FILE --workers N``.

Workers start with ``forkserver`` (as the feature pool of :mod:`~cultural_music.features.jobs`:
safe after torch has started threads), each limited to one BLAS/OpenMP thread
(``threadpool_limits(1)``, ``torch.set_num_threads(1)``: the pool already uses the cores) and
loading the model once, in its initializer.  Files go out in small chunks, a bounded number
ahead (memory flat in the number of files); rows come back as chunks finish and the driver,
the only writer, appends them.  Each worker runs the same :func:`~cultural_music.inference.batch.label_row`
as one process does, so every file's row is the same (probabilities equal to about 1e-6: the
thread count can change the order of float sums), bad files included.  A worker that dies (out
of memory) stops the run with a clear error; the rows written so far stay, and ``--resume``
continues.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

from cultural_music.errors import CulturalMusicError
from cultural_music.features.orphan import exit_with_owner, owner_token
from cultural_music.inference.batch import InProcess, label_row
from cultural_music.inference.load import load_classifier

__all__ = ["PoolLabeller", "label_chunks"]

CHUNK = 4  #: files per pool task: small, so rows stream back and the last chunks balance
_AHEAD = 3  # chunks in flight per worker
_PRELOAD = ("cultural_music.inference.pool",)

_WORKER: dict[str, Any] = {}


def _init_worker(model_dir: str, onnx: bool, owner: tuple[int, str | None]) -> None:
    """One thread per worker, exit with the driver (even on SIGKILL), load the model once."""
    from threadpoolctl import threadpool_limits

    exit_with_owner(owner)
    _WORKER["threads"] = threadpool_limits(1)
    if "torch" in sys.modules or not onnx:
        import torch

        torch.set_num_threads(1)
    _WORKER["clf"] = load_classifier(model_dir, onnx=onnx)


def _label_chunk(paths: list[str], hop_seconds: float | None, threshold: float | None) -> list[dict[str, Any]]:
    clf = _WORKER["clf"]
    return [label_row(clf, Path(p), hop_seconds=hop_seconds, threshold=threshold) for p in paths]


def _context() -> BaseContext:
    if "forkserver" in get_all_start_methods():
        ctx = get_context("forkserver")
        ctx.set_forkserver_preload(list(_PRELOAD))
        return ctx
    return get_context("spawn")  # pragma: no cover - Windows


def label_chunks(files: Sequence[Path], size: int) -> Iterator[list[str]]:
    """``files`` as lists of at most ``size`` path strings, in order."""
    for i in range(0, len(files), size):
        yield [str(f) for f in files[i:i + size]]


class PoolLabeller:
    """A :class:`~cultural_music.inference.batch.Labeller` on ``workers`` local processes.

    Parameters
    ----------
    model_dir, onnx
        What each worker loads (:func:`~cultural_music.inference.load.load_classifier`).
    workers
        Processes; 1 labels in this process (no pool).
    chunk
        Files per task.
    """

    def __init__(self, model_dir: str | Path, *, onnx: bool = False, workers: int = 2, chunk: int = CHUNK) -> None:
        self.model_dir = str(model_dir)
        self.onnx = onnx
        self.workers = max(1, int(workers))
        self.chunk = max(1, int(chunk))

    def __repr__(self) -> str:
        return f"PoolLabeller(workers={self.workers})"

    def rows(self, files: Sequence[Path], *, hop_seconds: float | None = None,
             threshold: float | None = None) -> Iterator[dict[str, Any]]:
        """One row per file, as chunks finish (see :class:`~cultural_music.inference.batch.Labeller`)."""
        if self.workers <= 1 or len(files) <= self.chunk:
            yield from InProcess(load_classifier(self.model_dir, onnx=self.onnx)).rows(
                files, hop_seconds=hop_seconds, threshold=threshold)
            return
        chunks = label_chunks(files, self.chunk)
        n = min(self.workers, -(-len(files) // self.chunk))
        pool = ProcessPoolExecutor(max_workers=n, mp_context=_context(), initializer=_init_worker,
                                   initargs=(self.model_dir, self.onnx, owner_token()))
        running: set[Future] = set()
        try:
            while True:
                for chunk in chunks:
                    running.add(pool.submit(_label_chunk, chunk, hop_seconds, threshold))
                    if len(running) >= _AHEAD * n:
                        break
                if not running:
                    return
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield from _result(fut)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _result(fut: Future) -> list[dict[str, Any]]:
    try:
        return fut.result()
    except BrokenProcessPool as err:
        raise CulturalMusicError("a labelling worker process died (out of memory?); the rows so far are written: "
                                 "rerun with --resume and fewer --workers") from err
