"""Confidence calibration fitted on the validation split (temperature scaling).

Stub: issue 4 fills this in.  ``fit_temperature`` returns the ``calibration`` entry stored in
``model.json``; prediction divides logits by its ``temperature``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fit_temperature"]


def fit_temperature(val_logits: np.ndarray, val_labels: np.ndarray) -> dict[str, Any]:
    """Calibration entry from validation clip logits ``(n, k)`` and labels ``(n,)``."""
    return {"temperature": 1.0, "method": "none"}
