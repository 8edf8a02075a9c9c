"""Predict with ``model.onnx`` through onnxruntime: the same API as
:class:`~cultural_music.inference.classifier.Classifier`, and torch is never imported.

Settings, classes, calibration and threshold come from ``model.json``; the ONNX file must have
been exported from the weights ``model.json`` describes (its recorded SHA-256 is checked).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cultural_music.config import MUSICNN, YAMNET_GRID_KINDS, Config, FeatureConfig
from cultural_music.errors import CulturalMusicError, ModelLoadError
from cultural_music.training.artifact import read_meta
from cultural_music.features.compute import clip_batches, feature_batches
from cultural_music.inference.classifier import _BATCH, DEFAULT_MODEL_DIR, ONNX_FILE, WindowClassifier

__all__ = ["ONNX_FILE", "OnnxClassifier", "network_input_config", "network_input_kind", "WAVEFORM"]

WAVEFORM = "waveform"  #: input kind of graphs that start from the clip's samples ``(batch, 1, samples)``


def network_input_kind(cfg: Config) -> str:
    """What the exported whole network takes: ``"waveform"`` for the YAMNet and fusion models
    (front ends inside the graph), else the feature kind of :func:`network_input_config`."""
    if cfg.features.kind in YAMNET_GRID_KINDS:
        return WAVEFORM
    return network_input_config(cfg).features.kind


def network_input_config(cfg: Config) -> Config:
    """The config whose features are the exported network's input: ``cfg`` itself for the
    log-mel kinds, the musicnn log-mel for embedding models (backbone inside the graph)."""
    if cfg.features.backbone is None:
        return cfg
    return dataclasses.replace(cfg, features=FeatureConfig.for_kind(MUSICNN))


class OnnxClassifier(WindowClassifier):
    """A model folder run with onnxruntime: ``predict``, ``predict_proba``, ``predict_timeline``.

    Parameters
    ----------
    session
        An ``onnxruntime.InferenceSession`` of ``model.onnx``.
    directory
        The model folder.
    meta
        Parsed ``model.json``.
    """

    backend = "onnx"

    def __init__(self, session: Any, *, directory: str | Path, meta: dict[str, Any]) -> None:
        try:
            config = Config.from_saved(meta["config"])
        except CulturalMusicError as err:
            raise ModelLoadError(f"{Path(directory) / 'model.json'}: bad config ({err})") from err
        super().__init__(directory=directory, meta=meta, config=config)
        self.session = session
        self._input = session.get_inputs()[0].name
        self.input_config = network_input_config(config)
        self.input_kind = network_input_kind(config)
        recorded = session.get_modelmeta().custom_metadata_map.get("input_kind", self.input_config.features.kind)
        if recorded != self.input_kind:
            raise ModelLoadError(f"{Path(directory) / ONNX_FILE}: takes {recorded!r} input, not the whole network's "
                                 f"{self.input_kind!r}; re-run 'cultural-music export {directory} --onnx'")

    @classmethod
    def load(cls, model_dir: str | Path = DEFAULT_MODEL_DIR, *, threads: int | None = None) -> "OnnxClassifier":
        """Open ``model_dir/model.onnx`` and check it matches ``model.json``.

        Parameters
        ----------
        model_dir
            Model folder holding ``model.json`` and ``model.onnx``.
        threads
            onnxruntime intra-op threads (default: onnxruntime's choice).

        Raises
        ------
        ModelLoadError
            Missing or unreadable ``model.onnx``, or one exported from other weights.
        """
        import onnxruntime as ort

        d = Path(model_dir)
        meta = read_meta(d)
        path = d / ONNX_FILE
        if not path.is_file():
            raise ModelLoadError(f"{path}: missing; write it with 'cultural-music export {d} --onnx'")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, ...)
            raise ModelLoadError(f"{path}: not a readable ONNX model ({str(err).strip().splitlines()[-1]})") from err
        recorded = session.get_modelmeta().custom_metadata_map
        if recorded.get("weights_sha256") != meta["weights_sha256"]:
            raise ModelLoadError(f"{path}: exported from other weights than {d / 'model.json'} describes; "
                                 f"re-run 'cultural-music export {d} --onnx'")
        return cls(session, directory=d, meta=meta)

    def _window_batches(self, path: str | Path, hop_seconds: float) -> Iterator[tuple[list[float], np.ndarray]]:
        """The windows as the exported network's input (for embedding models the backbone's
        log-mel, computed with numpy: the backbone runs inside the ONNX graph)."""
        if self.input_kind == WAVEFORM:
            return clip_batches(path, self.config, batch_size=_BATCH, hop_seconds=hop_seconds)
        return feature_batches(path, self.input_config, batch_size=_BATCH, hop_seconds=hop_seconds)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Class logits ``(n, n_classes)`` of the network input ``(n, rows, frames)``."""
        x = np.ascontiguousarray(features, dtype=np.float32)[:, None]
        return self.session.run(None, {self._input: x})[0]

