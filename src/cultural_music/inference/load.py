"""Load a model folder with the backend the caller chose: PyTorch or onnxruntime.

Its own module so that neither backend imports the other: :mod:`~cultural_music.inference.onnx_backend`
builds on :mod:`~cultural_music.inference.classifier`, and this module imports both.
"""

from __future__ import annotations

from pathlib import Path

from cultural_music.inference.classifier import DEFAULT_MODEL_DIR, Classifier, WindowClassifier

__all__ = ["load_classifier"]


def load_classifier(model_dir: str | Path = DEFAULT_MODEL_DIR, *, onnx: bool = False) -> WindowClassifier:
    """:class:`~cultural_music.inference.classifier.Classifier` (PyTorch), or with ``onnx=True``
    the torch-free :class:`~cultural_music.inference.onnx_backend.OnnxClassifier` (needs ``model.onnx``)."""
    if onnx:
        from cultural_music.inference.onnx_backend import OnnxClassifier  # onnxruntime only when asked

        return OnnxClassifier.load(model_dir)
    return Classifier.load(model_dir)
