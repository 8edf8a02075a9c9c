"""Labelling as Ray tasks: ``predict --out FILE --backend ray [--address auto]``.

Each task labels a chunk of files with the same :func:`~cultural_music.inference.batch.label_row`
as a local run, so every file gets the same row, bad files the same error rows.  A Ray worker
process loads the model once and keeps it for the later tasks it runs.  The driver submits a
bounded number of tasks ahead (memory flat in the number of files), collects them as they
finish (``ray.wait``) and is the only writer of the results.  A task whose worker dies or whose
node is lost is retried by Ray (``max_retries``); a chunk that still fails is retried one file
per task, and only a file that keeps killing its worker gets an error row saying so.

Model folder and audio files must be at the same path on every node (docs/cluster.md).
Only the CLI (``cli/options.make_labeller``) imports this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cultural_music.cluster.session import cluster_cpus, connect
from cultural_music.errors import CulturalMusicError
from cultural_music.inference.batch import error_row, label_row
from cultural_music.inference.load import load_classifier
from cultural_music.inference.pool import label_chunks

__all__ = ["RayLabeller", "label_task", "MAX_RETRIES"]

MAX_RETRIES = 3  #: Ray retries of a task whose worker died or whose node was lost
CHUNK = 8  #: files per task
_AHEAD_PER_CPU = 2  # tasks in flight per cluster CPU

_MODELS: dict[tuple[str, bool], Any] = {}  # per Ray worker process: the model, loaded once


def label_task(paths: list[str], model_dir: str, onnx: bool, hop_seconds: float | None,
               threshold: float | None) -> list[dict[str, Any]]:
    """What one Ray task does: :func:`label_row` for each path, in order (one BLAS thread: Ray
    gives each task one CPU)."""
    key = (model_dir, onnx)
    if key not in _MODELS:
        from threadpoolctl import threadpool_limits

        _MODELS["threads"] = threadpool_limits(1)
        if not onnx:
            import torch

            torch.set_num_threads(1)
        _MODELS[key] = load_classifier(model_dir, onnx=onnx)
    clf = _MODELS[key]
    return [label_row(clf, Path(p), hop_seconds=hop_seconds, threshold=threshold) for p in paths]


class RayLabeller:
    """A :class:`~cultural_music.inference.batch.Labeller` running Ray tasks.

    Parameters
    ----------
    model_dir, onnx
        What each Ray worker loads (an absolute path is sent: the same on every node).
    address
        The cluster to join (``"auto"``, ``"HOST:6379"``); ``None``: a local Ray instance with
        ``workers`` CPUs, or the Ray this process already joined.
    workers
        CPUs of a local instance (default: Ray's, all cores).
    chunk, max_retries
        Files per task; Ray retries of a lost task.
    task
        The function a task runs (tests pass one that crashes).
    """

    def __init__(self, model_dir: str | Path, *, onnx: bool = False, address: str | None = None,
                 workers: int | None = None, chunk: int = CHUNK, max_retries: int = MAX_RETRIES,
                 task: Any = label_task) -> None:
        self.model_dir = str(Path(model_dir).resolve())
        self.onnx = onnx
        self.address = address
        self.workers = workers
        self.chunk = max(1, int(chunk))
        self.max_retries = max_retries
        self.task = task

    def __repr__(self) -> str:
        return f"RayLabeller(address={self.address!r}, workers={self.workers})"

    def rows(self, files: Sequence[Path], *, hop_seconds: float | None = None,
             threshold: float | None = None) -> Iterator[dict[str, Any]]:
        """One row per file, as tasks finish."""
        ray = connect(self.address, num_cpus=self.workers)
        if not files:
            return
        from ray.exceptions import RayError

        remote = ray.remote(self.task).options(num_cpus=1, max_retries=self.max_retries)
        args = (self.model_dir, self.onnx, hop_seconds, threshold)
        todo = label_chunks(files, self.chunk)
        retry: list[list[str]] = []  # chunks that failed every retry, split into single files
        running: dict[Any, list[str]] = {}
        limit = _AHEAD_PER_CPU * cluster_cpus()
        try:
            while True:
                while len(running) < limit and (chunk := retry.pop() if retry else next(todo, None)) is not None:
                    running[remote.remote(chunk, *args)] = chunk
                if not running:
                    return
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    chunk = running.pop(ref)
                    try:
                        rows = ray.get(ref)
                    except RayError as err:
                        if isinstance(getattr(err, "cause", None), CulturalMusicError):
                            raise err.cause from None  # a bad option or model: every file would fail alike
                        if len(chunk) > 1:
                            retry.extend([p] for p in reversed(chunk))
                            continue
                        rows = [error_row(chunk[0], _failure(err, self.max_retries))]
                    yield from rows
        finally:
            for ref in running:
                ray.cancel(ref)


def _failure(err: BaseException, max_retries: int) -> str:
    """The reason of a file whose task failed ``max_retries + 1`` times."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip().splitlines()
    detail = text[-1] if text else type(cause).__name__
    return f"the Ray task failed {max_retries + 1} time(s) on this file ({type(cause).__name__}: {detail[:200]})"
