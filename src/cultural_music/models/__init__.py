"""Network architectures, registered by name so that new ones plug in without other changes.

Every model maps a batch of features ``(batch, 1, rows, columns)`` (rows:
``FeatureConfig.n_rows``; log-mels: ``(batch, 1, n_mels, frames)``) to class logits
``(batch, n_classes)``.  A model folder stores the name and keyword arguments, and
:func:`build_model` rebuilds the same network before loading its weights.

A model may declare, when registered, the settings it is meant to be trained with
(``defaults``: config section -> field -> value, e.g. the feature kind a pretrained backbone
needs, or its training recipe) and the feature kinds it accepts; :func:`default_config` and
:func:`check_config` use them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from cultural_music.config import LOGMEL, Config
from cultural_music.errors import ParameterError

__all__ = ["ConvexParts", "applicable_settings", "register", "build_model", "available_models", "default_config", "model_defaults", "check_config"]


@dataclass
class ConvexParts:
    """What a head whose fit is convex exposes (``convex_parts()``; fitted by
    ``training.convex_head``): ``pool`` maps the model input ``(batch, ...)`` to pooled features
    ``(batch, d)``; the buffers ``mean``/``var`` ``(d,)`` and ``eps`` standardise them as
    ``(z - mean) / sqrt(var + eps)``; ``linear`` maps the standardised features to logits."""

    pool: Callable[[Any], Any]
    mean: Any
    var: Any
    eps: float
    linear: nn.Linear


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., nn.Module]
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    feature_kinds: tuple[str, ...] | None = None
    summary: str = ""


_REGISTRY: dict[str, _Entry] = {}


def register(
    name: str,
    *,
    defaults: dict[str, dict[str, Any]] | None = None,
    feature_kinds: tuple[str, ...] | None = None,
    summary: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class decorator: make a model buildable by ``name``.

    Parameters
    ----------
    defaults
        Config overrides the model is meant to be trained with: ``{"train": {...}, ...}``.
    feature_kinds
        ``FeatureConfig.kind`` values the model accepts (``None``: any), whatever the backbone.
    summary
        One line for ``cultural-music models``.
    """

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = _Entry(factory, dict(defaults or {}), feature_kinds, summary)
        return factory

    return deco


def _load_builtin() -> None:
    """Import every module of this package; each registers its models."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def _entry(name: str) -> _Entry:
    _load_builtin()
    if name not in _REGISTRY:
        raise ParameterError(f"The 'model' parameter must be one of {sorted(_REGISTRY)}. Got {name!r} instead.")
    return _REGISTRY[name]


def available_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    _load_builtin()
    return sorted(_REGISTRY)


def model_summary(name: str) -> str:
    """One-line description of a registered model."""
    return _entry(name).summary


def build_model(name: str, *, n_classes: int, n_rows: int | None = None, n_mels: int | None = None,
                **kwargs: Any) -> nn.Module:
    """A fresh, randomly initialised network of the registered kind ``name``.

    ``n_rows`` is the number of feature rows the model sees (``FeatureConfig.n_rows``: mel
    bands, or the embedding size); ``n_mels`` is its older name, accepted for callers not yet
    moved.  Give one of them.
    """
    if (n_rows is None) == (n_mels is None):
        raise ParameterError(f"build_model({name!r}) needs the number of feature rows: give n_rows (FeatureConfig.n_rows).")
    return _entry(name).factory(n_classes=n_classes, n_rows=n_mels if n_rows is None else n_rows, **kwargs)


def model_defaults(name: str) -> dict[str, dict[str, Any]]:
    """The config overrides ``name`` is meant to be trained with (a copy)."""
    return {section: dict(values) for section, values in _entry(name).defaults.items()}


def default_config(name: str, base: Config | None = None) -> Config:
    """``base`` (default ``Config()``) with ``train.model = name`` and the model's defaults."""
    overrides = model_defaults(name)
    overrides.setdefault("train", {})["model"] = name
    feats = overrides.get("features", {})
    if "kind" in feats:
        # a new feature kind: start from that kind's settings, not from the base's log-mel ones
        from dataclasses import asdict

        from cultural_music.config import FeatureConfig

        overrides["features"] = {**asdict(FeatureConfig.for_kind(feats["kind"], feats.get("backbone"))), **feats}
    return (base or Config()).replace(**overrides)


def check_config(cfg: Config) -> None:
    """Raise :class:`ParameterError` if ``cfg.train.model`` does not accept ``cfg.features.kind``."""
    entry = _entry(cfg.train.model)
    kinds = entry.feature_kinds
    if kinds is None:
        return
    if cfg.features.kind in kinds:
        return
    raise ParameterError(
        f"The model {cfg.train.model!r} needs feature kind {' or '.join(repr(k) for k in kinds)}. "
        f"Got {cfg.features.kind!r} instead; start from cultural_music.models.default_config({cfg.train.model!r})."
    )


_AUG_WAVEFORM = ("time_stretch_p", "time_stretch_range", "pitch_shift_p", "pitch_shift_semitones", "noise_p", "noise_snr_db")


def applicable_settings(cfg: Config) -> dict[str, dict[str, Any]]:
    """The settings that act on this model, per section, for people (model.json's ``settings``,
    report.html); ``Config.to_dict`` keeps every field for rebuilding the exact config.

    Left out: feature settings fixed by a pretrained network (musicnn kinds), waveform
    augmentation probabilities with 0 variants, mask sizes with masking off, ingredients that
    are off (mixup 0, label smoothing 0, balanced sampling off), warm-up without the cosine
    schedule, the backbone learning-rate factor for models without a trainable backbone, and
    batch size / mixup / schedule for a full-batch L-BFGS fit.
    """
    d = cfg.to_dict()
    feats, aug, train = d["features"], d["augment"], d["train"]
    if cfg.features.kind != LOGMEL:  # fixed by the pretrained network
        feats = {k: feats[k] for k in ("kind", "backbone")}
    if feats.get("backbone", 0) is None:
        del feats["backbone"]
    if cfg.augment.n_variants == 0:
        aug = {k: v for k, v in aug.items() if k not in _AUG_WAVEFORM}
    if cfg.augment.spec_mask_p == 0:
        aug = {k: v for k, v in aug.items() if k not in ("freq_mask_max", "time_mask_max")}
    drop = {k for k, off in (("mixup_alpha", 0.0), ("label_smoothing", 0.0), ("balanced_sampling", False)) if train[k] == off}
    if cfg.train.lr_schedule != "cosine":
        drop.add("warmup_epochs")
    if not _has_trainable_backbone(cfg.train.model):
        drop.add("backbone_lr_scale")
    if cfg.train.optimizer == "lbfgs":
        drop |= {"batch_size", "mixup_alpha", "lr_schedule", "warmup_epochs"} if cfg.train.lr_schedule == "none" else {"batch_size", "mixup_alpha"}
    train = {k: v for k, v in train.items() if k not in drop}
    return {"audio": d["audio"], "features": feats, "augment": aug, "train": train}


def _has_trainable_backbone(model: str) -> bool:
    """Whether ``model`` fine-tunes a pretrained backbone (it has ``param_groups``)."""
    try:
        factory = _entry(model).factory
    except ParameterError:
        return False
    return hasattr(factory, "param_groups")
