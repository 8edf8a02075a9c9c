"""The "uncertain" answer: a confidence threshold chosen on the validation split.

Stub: issue 5 fills this in.  ``fit_threshold`` returns the ``uncertain`` entry stored in
``model.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fit_threshold"]


def fit_threshold(val_proba: np.ndarray, val_labels: np.ndarray) -> dict[str, Any]:
    """Threshold entry from calibrated validation recording probabilities ``(n, k)`` and labels ``(n,)``."""
    return {"threshold": 0.0, "method": "none"}
