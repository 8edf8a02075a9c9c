"""Learning-rate schedules as pure functions of the optimisation step (resume-safe)."""

from __future__ import annotations

import math

from cultural_music.errors import ParameterError

__all__ = ["lr_factor"]


def lr_factor(schedule: str, step: int, total_steps: int, *, warmup_steps: int = 0) -> float:
    """Multiplier of the base learning rate at optimisation step ``step`` (0-based).

    Parameters
    ----------
    schedule
        ``"none"``: 1 throughout.  ``"cosine"``: linear warm-up from ``1/warmup_steps`` to 1 over
        ``warmup_steps`` steps, then ``0.5 * (1 + cos(pi * t))`` with ``t`` going 0 -> 1 until
        ``total_steps``.  ``"onecycle"``: the same with the warm-up over the first 30 % of steps.
    total_steps
        Steps of the whole run (epochs x batches per epoch).
    """
    if schedule == "none":
        return 1.0
    if schedule not in ("cosine", "onecycle"):
        raise ParameterError(f"The 'schedule' parameter of lr_factor must be 'none', 'cosine' or 'onecycle'. Got {schedule!r} instead.")
    total = max(1, int(total_steps))
    warm = int(0.3 * total) if schedule == "onecycle" else max(0, min(int(warmup_steps), total - 1))
    if step < warm:
        return (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return 0.5 * (1.0 + math.cos(math.pi * t))
