"""The one typed configuration, saved inside every model folder.

Prediction always rebuilds features from the config stored with the model, so a model is
never fed features computed with other settings than it was trained on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from cultural_music.errors import ParameterError, check_in_range, check_positive

__all__ = ["AudioConfig", "FeatureConfig", "AugmentConfig", "TrainConfig", "Config", "n_patches", "FEATURE_KINDS", "EMBEDDING_KINDS", "SAVED_DEFAULTS", "PAD_MODES", "LR_SCHEDULES", "CLASS_WEIGHTINGS", "OPTIMIZERS"]


PAD_MODES = ("repeat", "zeros")
TUNABLE = ("logreg_c", "class_weighting")  #: TrainConfig settings a head search may choose
#: Settings added after model folders were first written, per section, with the value that
#: reproduces what an older folder meant (``audio.pad``: it was trained on zero padding;
#: ``features.backbone``: it was part of ``kind``, see :class:`FeatureConfig`);
#: :meth:`Config.from_saved` fills them in.
SAVED_DEFAULTS: dict[str, dict[str, Any]] = {"audio": {"pad": "zeros"}, "features": {"backbone": None}}


@dataclass(frozen=True)
class AudioConfig:
    """How recordings are decoded and cut into clips.

    Attributes
    ----------
    sample_rate
        Target sample rate in Hz; every file is resampled to it and mixed down to mono.
    clip_seconds
        Length of one clip in seconds.  Longer files are cut into several clips; a shorter file,
        and a kept trailing piece, is filled up to one clip as ``pad`` says.
    min_last_clip_fraction
        A trailing piece shorter than this fraction of a clip is dropped (unless it is the only
        piece of the file); longer pieces are padded and kept.
    pad
        How a piece shorter than one clip is filled: ``"repeat"`` (default) plays it again and
        again until the clip is full, so a 1 s event in a 5 s clip is five copies of the event and
        no silence; ``"zeros"`` appends silence (model folders written before this setting existed
        load with ``"zeros"``, the features they were trained on).
    """

    sample_rate: int = 22050
    clip_seconds: float = 30.0
    min_last_clip_fraction: float = 0.5
    pad: str = "repeat"

    def __post_init__(self) -> None:
        check_in_range("sample_rate", "AudioConfig", self.sample_rate, 1000, 384000)
        check_positive("clip_seconds", "AudioConfig", self.clip_seconds)
        check_in_range("min_last_clip_fraction", "AudioConfig", self.min_last_clip_fraction, 0.0, 1.0)
        if self.pad not in PAD_MODES:
            raise ParameterError(f"The 'pad' parameter of AudioConfig must be one of {list(PAD_MODES)}. Got {self.pad!r} instead.")

    @property
    def clip_samples(self) -> int:
        """Samples in one clip at :attr:`sample_rate`."""
        return max(1, int(round(self.clip_seconds * self.sample_rate)))


LOGMEL = "logmel"
MUSICNN = "musicnn"
MUSICNN_EMBEDDING = "musicnn-embedding"
YAMNET_EMBEDDING = "yamnet-embedding"
YAMNET_MID_EMBEDDING = "yamnet-mid-embedding"
FUSION_EMBEDDING = "fusion-embedding"
FEATURE_KINDS = (LOGMEL, MUSICNN, MUSICNN_EMBEDDING, YAMNET_EMBEDDING, YAMNET_MID_EMBEDDING, FUSION_EMBEDDING)
#: kinds that are a frozen pretrained network's embeddings ``(n_rows, patches)``
EMBEDDING_KINDS = (MUSICNN_EMBEDDING, YAMNET_EMBEDDING, YAMNET_MID_EMBEDDING, FUSION_EMBEDDING)
#: kinds with one column per YAMNet patch (0.96 s, 0.48 s apart)
YAMNET_GRID_KINDS = (YAMNET_EMBEDDING, YAMNET_MID_EMBEDDING, FUSION_EMBEDDING)
MUSICNN_BACKBONES = ("MSD_musicnn", "MTT_musicnn")
YAMNET = "yamnet"
FUSION_BACKBONES = ("MSD_musicnn+yamnet",)  #: musicnn + YAMNet, concatenated (see features.fusion)
#: backbones each embedding kind accepts (the first is the default)
KIND_BACKBONES = {MUSICNN_EMBEDDING: MUSICNN_BACKBONES, YAMNET_EMBEDDING: (YAMNET,), YAMNET_MID_EMBEDDING: (YAMNET,),
                  FUSION_EMBEDDING: FUSION_BACKBONES}
MUSICNN_SAMPLE_RATE = 16000  #: Hz: the musicnn networks' input rate
MUSICNN_N_MELS = 96  #: mel bands of the musicnn input
MUSICNN_EMBEDDING_DIM = 1506  #: [mean_pool, max_pool] of the musicnn mid-end (753 + 753)
MUSICNN_PATCH_FRAMES = 187  #: frames of one musicnn input patch (3 s at hop 256, 16 kHz)
MUSICNN_N_FFT = 512  #: samples (32 ms) per FFT frame of the musicnn input
MUSICNN_HOP = 256  #: samples (16 ms) between musicnn log-mel frames
YAMNET_EMBEDDING_DIM = 1024  #: YAMNet's embedding of one 0.96 s patch
YAMNET_MID_EMBEDDING_DIM = 1536  #: YAMNet's mid-level embedding (blocks 5 and 7, mean and max) of one patch
_YAMNET_MIN_SAMPLES, _YAMNET_PATCH_HOP = 15600, 7680  #: one 0.975 s patch; 0.48 s between patches (16 kHz)
#: rows of each embedding kind
EMBEDDING_DIMS = {MUSICNN_EMBEDDING: MUSICNN_EMBEDDING_DIM, YAMNET_EMBEDDING: YAMNET_EMBEDDING_DIM,
                  YAMNET_MID_EMBEDDING: YAMNET_MID_EMBEDDING_DIM, FUSION_EMBEDDING: MUSICNN_EMBEDDING_DIM + YAMNET_EMBEDDING_DIM}


@dataclass(frozen=True)
class FeatureConfig:
    """What the network sees: the feature map ``(rows, columns)`` of one clip (rows: :attr:`n_rows`).

    ``kind`` chooses the features (see :func:`cultural_music.features.compute.compute_features`):

    - ``"logmel"``: ``librosa.feature.melspectrogram`` (power), then dB relative to the clip's
      loudest bin, clipped at ``-top_db`` and mapped linearly to 0..1, so every clip spans 0..1
      whatever its recording level.  Shape ``(n_mels, frames)``.
    - ``"musicnn"``: the pretrained musicnn networks' input, ``log10(10000 * mel + 1)`` at 16 kHz
      with ``n_fft=512``, ``hop_length=256``, ``n_mels=96``.  Shape ``(96, frames)``.
    - ``"musicnn-embedding"`` with ``backbone`` ``"MSD_musicnn"`` or ``"MTT_musicnn"``: the frozen
      backbone's 1506-dim embedding of every 3 s patch of the musicnn input.  Shape ``(1506, patches)``.
    - ``"yamnet-embedding"`` (backbone ``"yamnet"``): YAMNet's 1024-dim embedding of every 0.96 s
      patch, 0.48 s apart.  Shape ``(1024, patches)``.
    - ``"yamnet-mid-embedding"`` (backbone ``"yamnet"``): the mean and max over time and mel of
      YAMNet's feature maps after separable blocks 5 and 7, on the same patches.  Shape ``(1536, patches)``.
    - ``"fusion-embedding"`` (backbone ``"MSD_musicnn+yamnet"``): both, on YAMNet's patch grid
      (each YAMNet patch beside the musicnn patch holding its centre).  Shape ``(2530, patches)``.

    ``backbone`` is ``None`` for the other kinds.  The musicnn kinds need
    ``AudioConfig.sample_rate == 16000`` and fix ``n_fft``, ``hop_length``, ``n_mels`` (96) and the
    frequency range (:meth:`for_kind` gives a valid config for any kind).  The one-string form
    ``kind="musicnn-embedding:<backbone>"`` (with ``n_mels=1506``) of earlier model folders is
    still accepted and read as ``kind`` + ``backbone``.
    """

    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float = 80.0
    kind: str = LOGMEL
    backbone: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.kind, str) and ":" in self.kind:
            self._read_one_string_kind()
        check_in_range("n_fft", "FeatureConfig", self.n_fft, 16, 65536)
        check_in_range("hop_length", "FeatureConfig", self.hop_length, 1, self.n_fft)
        check_positive("top_db", "FeatureConfig", self.top_db)
        if self.kind not in FEATURE_KINDS:
            raise ParameterError(f"The 'kind' parameter of FeatureConfig must be one of {list(FEATURE_KINDS)}. Got {self.kind!r} instead.")
        allowed = KIND_BACKBONES.get(self.kind, (None,))
        if self.backbone is None and self.kind in YAMNET_GRID_KINDS:
            object.__setattr__(self, "backbone", allowed[0])  # the kind's only backbone
        if self.backbone not in allowed:
            raise ParameterError(f"The 'backbone' parameter of FeatureConfig must be one of {list(allowed)} for kind "
                                 f"{self.kind!r}. Got {self.backbone!r} instead.")
        if self.kind == LOGMEL:
            check_in_range("n_mels", "FeatureConfig", self.n_mels, 1, 1024)
        for name, want in _fixed_settings(self.kind).items():
            if getattr(self, name) != want:
                raise ParameterError(
                    f"The '{name}' parameter of FeatureConfig must be {want!r} for kind {self.kind!r} "
                    f"(fixed by the pretrained network). Got {getattr(self, name)!r} instead."
                )

    def _read_one_string_kind(self) -> None:
        """``kind="musicnn-embedding:<backbone>"`` (model folders and ``--set`` values of earlier
        versions, where ``n_mels`` held the embedding size 1506) -> ``kind`` + ``backbone``, 96 mels."""
        kind, backbone = _split_kind(self.kind)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "backbone", backbone)
        if kind == MUSICNN_EMBEDDING and self.n_mels == MUSICNN_EMBEDDING_DIM:
            object.__setattr__(self, "n_mels", MUSICNN_N_MELS)

    @classmethod
    def for_kind(cls, kind: str, backbone: str | None = None) -> "FeatureConfig":
        """The default settings of a feature kind (musicnn kinds: the only valid ones); ``kind``
        may also be the one-string form ``"musicnn-embedding:<backbone>"``."""
        base, named = _split_kind(kind)
        backbone = backbone if named is None else named
        if backbone is None and base in KIND_BACKBONES and base != MUSICNN_EMBEDDING:
            backbone = KIND_BACKBONES[base][0]  # the kind's only backbone
        return cls(kind=base, backbone=backbone, **_fixed_settings(base))

    @property
    def n_rows(self) -> int:
        """Rows of the feature map the model sees: ``n_mels``, or the embedding size (1506, 1024, 2530)."""
        return EMBEDDING_DIMS.get(self.kind, self.n_mels)

    @property
    def sample_rate(self) -> int | None:
        """Sample rate in Hz the features require (``None``: any)."""
        return None if self.kind == LOGMEL else MUSICNN_SAMPLE_RATE

    def n_frames(self, n_samples: int) -> int:
        """Columns produced for ``n_samples`` samples: frames (librosa's ``center=True``
        framing), 3 s patches for musicnn embeddings (see :func:`n_patches`), or YAMNet's 0.96 s
        patches 0.48 s apart (the clip zero-padded to whole patches) for the YAMNet and fusion kinds."""
        if self.kind in YAMNET_GRID_KINDS:
            return 1 + -(-max(0, n_samples - _YAMNET_MIN_SAMPLES) // _YAMNET_PATCH_HOP)
        frames = 1 + n_samples // self.hop_length
        return n_patches(frames) if self.kind == MUSICNN_EMBEDDING else frames

    def key_fields(self) -> dict[str, Any]:
        """The settings in the form feature-cache keys hash (unchanged since the one-string kind:
        ``kind="musicnn-embedding:<backbone>"``, ``n_mels`` = :attr:`n_rows`; no ``backbone``),
        so existing caches stay valid."""
        fields = dataclasses.asdict(self)
        del fields["backbone"]
        if self.backbone is not None:
            fields.update(kind=f"{self.kind}:{self.backbone}", n_mels=self.n_rows)
        return fields


def _split_kind(kind: str) -> tuple[str, str | None]:
    """``"musicnn-embedding:MSD_musicnn"`` -> ``("musicnn-embedding", "MSD_musicnn")``; a kind
    without ``:`` -> ``(kind, None)``.  The only place the one-string form is read."""
    base, sep, backbone = kind.partition(":")
    if sep and base != MUSICNN_EMBEDDING:
        raise ParameterError(f"The 'kind' parameter of FeatureConfig must be one of {list(FEATURE_KINDS)} "
                             f"(or '{MUSICNN_EMBEDDING}:<backbone>'). Got {kind!r} instead.")
    return base, (backbone if sep else None)


def _fixed_settings(kind: str) -> dict[str, Any]:
    """Settings a feature kind fixes (none for log-mels)."""
    if kind == LOGMEL:
        return {}
    return {"n_fft": MUSICNN_N_FFT, "hop_length": MUSICNN_HOP, "n_mels": MUSICNN_N_MELS, "fmin": 0.0, "fmax": None}


def n_patches(frames: int, patch_frames: int = MUSICNN_PATCH_FRAMES) -> int:
    """Number of 3 s patches covering ``frames`` log-mel frames: ``ceil(frames / patch_frames)``,
    at least 1 (the patches themselves: :func:`cultural_music.backbones.musicnn.covering_index`)."""
    return max(1, -(-int(frames) // patch_frames))


@dataclass(frozen=True)
class AugmentConfig:
    """Training-split augmentation.

    Waveform augmentations (time-stretch, pitch-shift, white noise) are costly, so
    ``n_variants`` augmented copies of each training clip are computed once, cached as features,
    and one of them (or the original) is drawn at random each epoch.  Spectrogram masking is
    cheap and applied on the fly.
    """

    n_variants: int = 2
    time_stretch_p: float = 0.5
    time_stretch_range: tuple[float, float] = (0.85, 1.15)
    pitch_shift_p: float = 0.5
    pitch_shift_semitones: tuple[float, float] = (-2.0, 2.0)
    noise_p: float = 0.5
    noise_snr_db: tuple[float, float] = (10.0, 30.0)
    spec_mask_p: float = 0.5
    freq_mask_max: int = 12
    time_mask_max: int = 40

    def __post_init__(self) -> None:
        check_in_range("n_variants", "AugmentConfig", self.n_variants, 0, 64)
        for name in ("time_stretch_p", "pitch_shift_p", "noise_p", "spec_mask_p"):
            check_in_range(name, "AugmentConfig", getattr(self, name), 0.0, 1.0)
        for name in ("time_stretch_range", "pitch_shift_semitones", "noise_snr_db"):
            low, high = getattr(self, name)
            if low > high:
                raise ParameterError(
                    f"The '{name}' parameter of AugmentConfig must be (low, high) with low <= high. "
                    f"Got {(low, high)!r} instead."
                )
        if self.time_stretch_range[0] <= 0:
            raise ParameterError(
                "The 'time_stretch_range' parameter of AugmentConfig must be > 0. "
                f"Got {self.time_stretch_range!r} instead."
            )


LR_SCHEDULES = ("none", "cosine", "onecycle")
OPTIMIZERS = ("adam", "lbfgs")
CLASS_WEIGHTINGS = ("none", "balanced")


@dataclass(frozen=True)
class TrainConfig:
    """Model choice, optimisation recipe and split settings.

    The defaults are the reference recipe (Adam at a fixed learning rate, nothing else); each
    model's recommended recipe is ``cultural_music.models.default_config(name)``.

    Attributes
    ----------
    optimizer
        ``"adam"`` (Adam, or AdamW when ``weight_decay > 0``; mini-batches) or ``"lbfgs"``
        (full-batch L-BFGS, one step of 20 iterations per epoch; for small models such as a
        linear head on embeddings: deterministic, no mixup, dropout should be 0).
    weight_decay
        Adam: decoupled weight decay (AdamW) per step, relative to the learning rate; 0 = plain
        Adam.  L-BFGS: L2 penalty ``weight_decay * sum(w ** 2)`` on the weight matrices.
    lr_schedule
        ``"none"`` (constant), ``"cosine"`` (linear warm-up over ``warmup_epochs``, then cosine
        decay to 0 at ``epochs``) or ``"onecycle"`` (warm-up over the first 30 %, then cosine decay).
    warmup_epochs
        Linear warm-up length of the ``"cosine"`` schedule, in epochs (may be fractional).
    mixup_alpha
        Mixup: each training batch is mixed with a shuffled copy of itself with weight
        ``lam ~ Beta(alpha, alpha)``; 0 = off.
    label_smoothing
        Label smoothing of the training loss, in [0, 1).
    class_weighting
        ``"balanced"``: loss weights ``n / (k * n_c)`` from the training clips, so every class
        counts as much however many clips it has; ``"none"``: every clip counts once.
    balanced_sampling
        Draw training clips with replacement so that every class is equally likely per draw.
    backbone_lr_scale
        Learning-rate factor of a pretrained backbone being fine-tuned (models that expose one).
    logreg_c
        A convex head's (``musicnn``) inverse L2 strength, scikit-learn's ``C`` on the summed
        class-weighted log loss: larger = weaker regularisation.
    tune
        Settings chosen by group cross-validation on the training side before the fit, from
        ``"logreg_c"`` (6 values, 1e-3..100) and ``"class_weighting"`` (none, balanced); a convex
        head only (``training.head_search``).  Empty: the settings above are used as they are.
    """

    model: str = "seed-cnn"
    epochs: int = 50
    batch_size: int = 16
    learning_rate: float = 1e-4
    patience: int = 6
    seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lr_schedule: str = "none"
    warmup_epochs: float = 1.0
    mixup_alpha: float = 0.0
    label_smoothing: float = 0.0
    class_weighting: str = "none"
    balanced_sampling: bool = False
    backbone_lr_scale: float = 0.1
    logreg_c: float = 1.0
    tune: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_in_range("epochs", "TrainConfig", self.epochs, 1, 100000)
        check_in_range("batch_size", "TrainConfig", self.batch_size, 1, 65536)
        check_positive("learning_rate", "TrainConfig", self.learning_rate)
        check_in_range("patience", "TrainConfig", self.patience, 1, 100000)
        check_in_range("val_fraction", "TrainConfig", self.val_fraction, 0.01, 0.5)
        check_in_range("test_fraction", "TrainConfig", self.test_fraction, 0.01, 0.5)
        check_in_range("weight_decay", "TrainConfig", self.weight_decay, 0.0, 1.0)
        check_in_range("warmup_epochs", "TrainConfig", self.warmup_epochs, 0.0, 100000)
        check_in_range("mixup_alpha", "TrainConfig", self.mixup_alpha, 0.0, 100.0)
        check_in_range("label_smoothing", "TrainConfig", self.label_smoothing, 0.0, 0.99)
        check_in_range("backbone_lr_scale", "TrainConfig", self.backbone_lr_scale, 0.0, 1.0)
        check_positive("logreg_c", "TrainConfig", self.logreg_c)
        if not isinstance(self.tune, tuple) or not set(self.tune) <= set(TUNABLE):
            raise ParameterError(f"The 'tune' parameter of TrainConfig must be a tuple of names from {list(TUNABLE)}. "
                                 f"Got {self.tune!r} instead.")
        for name, allowed in (("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES), ("class_weighting", CLASS_WEIGHTINGS)):
            if getattr(self, name) not in allowed:
                raise ParameterError(
                    f"The '{name}' parameter of TrainConfig must be one of {list(allowed)}. Got {getattr(self, name)!r} instead."
                )
        if self.optimizer == "lbfgs" and self.mixup_alpha > 0:
            raise ParameterError("The 'mixup_alpha' parameter of TrainConfig must be 0 with optimizer 'lbfgs' (a full-batch "
                                 f"fit needs a fixed objective). Got {self.mixup_alpha!r} instead.")
        if not isinstance(self.balanced_sampling, bool):
            raise ParameterError(
                f"The 'balanced_sampling' parameter of TrainConfig must be a bool. Got {self.balanced_sampling!r} instead."
            )


_SECTIONS = {
    "audio": AudioConfig,
    "features": FeatureConfig,
    "augment": AugmentConfig,
    "train": TrainConfig,
}


@dataclass(frozen=True)
class Config:
    """Everything that defines a model: audio, features, augmentation and training settings."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        need = self.features.sample_rate
        if need is not None and self.audio.sample_rate != need:
            raise ParameterError(
                f"The 'sample_rate' parameter of AudioConfig must be {need} for feature kind "
                f"{self.features.kind!r}. Got {self.audio.sample_rate!r} instead."
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing keys take defaults."""
        if not isinstance(data, dict):
            raise ParameterError(f"A config must be a JSON object. Got {type(data).__name__} instead.")
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            raise ParameterError(f"Unknown config section(s): {sorted(unknown)}")
        parts = {}
        for name, section in _SECTIONS.items():
            values = dict(data.get(name, {}))
            names = {f.name for f in dataclasses.fields(section)}
            bad = set(values) - names
            if bad:
                raise ParameterError(f"Unknown key(s) in config section '{name}': {sorted(bad)}")
            for f in dataclasses.fields(section):
                if f.name in values and isinstance(values[f.name], list):
                    values[f.name] = tuple(values[f.name])
            parts[name] = section(**values)
        return cls(**parts)

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> "Config":
        """:meth:`from_dict` for a config stored in a model folder: a setting the folder predates
        takes the value it was trained with (:data:`SAVED_DEFAULTS`), not today's default."""
        if not isinstance(data, dict):
            return cls.from_dict(data)
        filled = dict(data)
        for name, olds in SAVED_DEFAULTS.items():
            if isinstance(filled.get(name), dict):
                filled[name] = {**olds, **filled[name]}
        return cls.from_dict(filled)

    def replace(self, **sections: Any) -> "Config":
        """A copy with some sections' fields replaced: ``cfg.replace(train={"epochs": 3})``."""
        parts = {}
        for name, changes in sections.items():
            if name not in _SECTIONS:
                raise ParameterError(f"Unknown config section '{name}'.")
            parts[name] = dataclasses.replace(getattr(self, name), **changes)
        return dataclasses.replace(self, **parts)

    def feature_key(self) -> str:
        """Short hash of the audio + feature settings: the cache key part for features."""
        audio = dataclasses.asdict(self.audio)
        if audio["pad"] == "zeros":  # the features cached before the setting existed: same key
            del audio["pad"]
        return _hash({"audio": audio, "features": self.features.key_fields()})

    def augment_key(self) -> str:
        """Short hash of the augmentation settings plus the seed (augmented-variant cache key)."""
        return _hash({"augment": dataclasses.asdict(self.augment), "seed": self.train.seed})


def _hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
