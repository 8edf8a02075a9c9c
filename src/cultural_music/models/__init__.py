"""Network architectures, registered by name so that new ones plug in without other changes.

Every model maps a batch of features ``(batch, 1, n_mels, frames)`` to class logits
``(batch, n_classes)``.  A model folder stores the name and keyword arguments, and
:func:`build_model` rebuilds the same network before loading its weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import ParameterError

__all__ = ["register", "build_model", "available_models"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class decorator: make a model buildable by ``name``."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = factory
        return factory

    return deco


def _load_builtin() -> None:
    """Import every module of this package; each registers its models."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def available_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    _load_builtin()
    return sorted(_REGISTRY)


def build_model(name: str, *, n_classes: int, n_mels: int, **kwargs: Any) -> nn.Module:
    """A fresh, randomly initialised network of the registered kind ``name``."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ParameterError(
            f"The 'model' parameter must be one of {sorted(_REGISTRY)}. Got {name!r} instead."
        )
    return _REGISTRY[name](n_classes=n_classes, n_mels=n_mels, **kwargs)
