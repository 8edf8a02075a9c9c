"""The app's one loaded model and the single worker thread that runs it.

Requests are received concurrently, but every decode + inference runs on one dedicated thread,
one file at a time, so the PyTorch module is never called from two threads at once.  Waiting
work is bounded: past ``max_pending`` queued files a request is refused with 503.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from cultural_music.features.audio import audio_info
from cultural_music.errors import AudioLoadError
from cultural_music.serve.errors import RequestError

__all__ = ["ModelRunner"]

T = TypeVar("T")
log = logging.getLogger(__name__)


class ModelRunner:
    """A :class:`~cultural_music.inference.classifier.Classifier` shared by all requests of an app.

    Parameters
    ----------
    classifier
        The loaded model (``Classifier.load(model_dir)``): ``predict(path)`` returning a
        :class:`~cultural_music.inference.classifier.Prediction`, and ``describe()``.
    max_pending
        Files allowed to wait or run at once; one more is refused with 503.
    """

    def __init__(self, classifier: Any, *, max_pending: int = 32) -> None:
        self.classifier = classifier
        self.max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cultural-music-predict")
        self._lock = threading.Lock()
        self._pending = 0
        self.info: dict[str, Any] = dict(classifier.describe())
        version = self.info.get("version")
        #: ``{"name", "version"}`` of the model, for every answer
        self.model_ref = {"name": str(self.info.get("name")), "version": None if version is None else str(version)}

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``fn(*args)`` on the model thread.

        Raises
        ------
        RequestError
            503 when ``max_pending`` files are already waiting or running.
        """
        with self._lock:
            if self._pending >= self.max_pending:
                raise RequestError(503, f"server busy: {self._pending} recordings are waiting; try again in a minute")
            self._pending += 1
        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return future

    def _release(self, _: object) -> None:
        with self._lock:
            self._pending -= 1

    def predict_file(self, path: Path, *, filename: str, max_duration: float) -> dict[str, Any]:
        """Check the duration, then predict; runs on the model thread (see :meth:`submit`).

        Parameters
        ----------
        path
            The saved upload.
        filename
            The name the user gave the file (messages and answer name it, never ``path``).
        max_duration
            Longest accepted recording in seconds.

        Returns
        -------
        dict
            label, confidence (0..1), uncertain, probabilities, top, duration (s), n_clips,
            timeline (segments with start/end in s), model ``{"name", "version"}``.

        Raises
        ------
        RequestError
            413 longer than ``max_duration``; 422 audio that cannot be decoded.
        """
        try:
            info = audio_info(path)
            if info.duration > max_duration:
                raise RequestError(413, f"{filename}: {info.duration:.1f} s long; this server accepts recordings up to {max_duration:g} s")
            pred = self.classifier.predict(path)
        except AudioLoadError as err:
            raise RequestError(422, f"{filename}: {err.reason}") from err
        d = pred.to_dict()
        return {
            "filename": filename,
            "label": d["label"],
            "confidence": d["confidence"],
            "uncertain": bool(d["uncertain"]),
            "probabilities": d["probabilities"],
            "top": d["top"],
            "duration": d["duration"],
            "n_clips": d["n_clips"],
            "timeline": d["timeline"],  # Prediction.to_dict: label, start, end, confidence
            "model": self.model_ref,
        }

    def warm_up(self) -> Future[None]:
        """Predict a generated 1 s noise file on the model thread, so that the first real
        request does not pay for lazy imports and first-call set-up (seconds on a CPU)."""
        return self.submit(self._warm_up)

    def _warm_up(self) -> None:
        import numpy as np
        import soundfile as sf

        sr = int(self.classifier.config.audio.sample_rate)
        folder = Path(tempfile.mkdtemp(prefix="cultural-music-warm-up-"))
        try:
            noise = 0.01 * np.random.default_rng(0).standard_normal(sr).astype(np.float32)
            sf.write(str(folder / "warm-up.wav"), noise, sr)
            self.classifier.predict(folder / "warm-up.wav")
        except Exception as err:  # the server still starts; the first request will show the real error
            log.warning("warm-up prediction failed: %s", err)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Stop the model thread (queued work is dropped)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
