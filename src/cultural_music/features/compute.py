"""Model input features: one entry point, :func:`compute_features`, dispatching on
``FeatureConfig.kind``.

- ``"logmel"``: the mel power spectrogram (librosa's ``melspectrogram`` defaults, computed by
  :mod:`.melspec`), then dB relative to the clip's
  loudest bin, clipped at ``-top_db`` and mapped linearly to 0..1.
- ``"musicnn"``: musicnn's input, ``log10(10000 * mel + 1)`` (16 kHz, 512/256, 96 mels).
- ``"musicnn-embedding"``: the frozen pretrained backbone's (``FeatureConfig.backbone``) embedding of every 3 s
  patch; computed here so that extraction caches it like any other feature.
- ``"yamnet-embedding"``: YAMNet's embedding of every 0.96 s patch (0.48 s apart).
- ``"fusion-embedding"``: both, musicnn's put on YAMNet's patch grid (:func:`fuse_embeddings`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from cultural_music.features.audio import iter_clips
from cultural_music.config import (FUSION_EMBEDDING, LOGMEL, MUSICNN, MUSICNN_EMBEDDING, MUSICNN_HOP, MUSICNN_N_FFT, MUSICNN_N_MELS,
                                   MUSICNN_PATCH_FRAMES, MUSICNN_SAMPLE_RATE, YAMNET_EMBEDDING, YAMNET_MID_EMBEDDING, Config, FeatureConfig)
from cultural_music.errors import ParameterError
from cultural_music.features.melspec import mel_power

__all__ = ["compute_features", "feature_batches", "clip_batches", "log_mel", "musicnn_log_mel", "feature_shape", "fuse_embeddings",
           "fusion_index", "component_configs"]

_SILENCE = 1e-10


def compute_features(clips: np.ndarray, cfg: Config) -> np.ndarray:
    """Model input features of a batch of clips: the one entry point training, evaluation and
    prediction all use, so they can never disagree.

    Parameters
    ----------
    clips
        float32 ``(n, samples)`` clips at ``cfg.audio.sample_rate`` Hz.
    cfg
        The model's full config.

    Returns
    -------
    np.ndarray
        float32 ``(n, rows, columns)``: ``(n, n_mels, frames)`` for the log-mel kinds,
        ``(n, dim, patches)`` for embeddings (dim 1506, 1024, 1536 or 2530; see
        :class:`~cultural_music.config.FeatureConfig`).
    """
    fc = cfg.features
    if fc.kind == LOGMEL:
        return log_mel(clips, sample_rate=cfg.audio.sample_rate, cfg=fc)
    if cfg.audio.sample_rate != MUSICNN_SAMPLE_RATE:  # Config checks this; kept for hand-made configs
        raise ParameterError(f"Feature kind {fc.kind!r} needs 16000 Hz clips. Got {cfg.audio.sample_rate} Hz instead.")
    if fc.kind in (YAMNET_EMBEDDING, YAMNET_MID_EMBEDDING):
        from cultural_music.backbones.yamnet import embed_waveforms

        return embed_waveforms(clips, mid=fc.kind == YAMNET_MID_EMBEDDING)
    if fc.kind == FUSION_EMBEDDING:
        musicnn_cfg, yamnet_cfg = component_configs(cfg)
        return fuse_embeddings(compute_features(clips, musicnn_cfg), compute_features(clips, yamnet_cfg), clips.shape[-1])
    mel = musicnn_log_mel(clips)
    if fc.kind == MUSICNN:
        return mel
    from cultural_music.backbones.musicnn import embed_logmels, pretrained

    assert fc.backbone is not None
    return embed_logmels(pretrained(fc.backbone), mel)


def component_configs(cfg: Config) -> tuple[Config, Config]:
    """The musicnn-embedding and yamnet-embedding configs whose features a fusion config joins
    (same audio and augmentation settings, so their caches serve the fusion too)."""
    musicnn = cfg.features.backbone.split("+")[0] if cfg.features.backbone else "MSD_musicnn"
    return (dataclasses.replace(cfg, features=FeatureConfig.for_kind(MUSICNN_EMBEDDING, musicnn)),
            dataclasses.replace(cfg, features=FeatureConfig.for_kind(YAMNET_EMBEDDING)))


def fusion_index(n_samples: int) -> np.ndarray:
    """int64 ``(yamnet_patches,)`` for a clip of ``n_samples`` samples (16 kHz): for each YAMNet
    patch (0.96 s, starting every 0.48 s), the musicnn patch (3 s, the covering patches of
    :func:`~cultural_music.backbones.musicnn.covering_index`) whose centre is nearest its centre."""
    from cultural_music.backbones.musicnn import covering_index

    musicnn_centres = (covering_index(1 + n_samples // MUSICNN_HOP)[:, 0] + MUSICNN_PATCH_FRAMES / 2) * MUSICNN_HOP
    n_yamnet = FeatureConfig.for_kind(YAMNET_EMBEDDING).n_frames(n_samples)
    yamnet_centres = np.arange(n_yamnet) * 7680 + 7800  # samples (0.48 s hop, 15600 / 2)
    return np.abs(yamnet_centres[:, None] - musicnn_centres[None]).argmin(axis=1).astype(np.int64)


def fuse_embeddings(musicnn_emb: np.ndarray, yamnet_emb: np.ndarray, n_samples: int) -> np.ndarray:
    """Join ``(..., 1506, Pm)`` musicnn and ``(..., 1024, Py)`` YAMNet embeddings of the same clips
    of ``n_samples`` samples into ``(..., 2530, Py)``: musicnn rows first, each YAMNet patch beside
    the musicnn patch nearest it (:func:`fusion_index`; pooling over patches then weighs both
    networks by time)."""
    index = fusion_index(n_samples)
    if index.size != yamnet_emb.shape[-1] or index.max() >= musicnn_emb.shape[-1]:
        raise ParameterError(f"fuse_embeddings: embeddings of {musicnn_emb.shape[-1]} musicnn and {yamnet_emb.shape[-1]} "
                             f"YAMNet patches are not of one {n_samples}-sample clip.")
    return np.concatenate([np.take(musicnn_emb, index, axis=-1), yamnet_emb], axis=-2).astype(np.float32, copy=False)


def feature_batches(path: str | Path, cfg: Config, *, batch_size: int, hop_seconds: float | None = None,
                    transform: Callable[[np.ndarray], np.ndarray] | None = None) -> Iterator[tuple[list[float], np.ndarray]]:
    """A file's clips (streamed, see :func:`~cultural_music.features.audio.iter_clips`) as features, batch
    by batch, so memory stays bounded whatever the file length.

    Yields
    ------
    tuple
        Clip starts in seconds and features ``(n <= batch_size, rows, columns)``; ``transform``
        (e.g. an augmentation) is applied to each float32 ``(samples,)`` clip first.
    """
    for starts, clips in clip_batches(path, cfg, batch_size=batch_size, hop_seconds=hop_seconds, transform=transform):
        yield starts, compute_features(clips, cfg)


def clip_batches(path: str | Path, cfg: Config, *, batch_size: int, hop_seconds: float | None = None,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None) -> Iterator[tuple[list[float], np.ndarray]]:
    """A file's clips themselves, batch by batch: starts in seconds and float32 ``(n <= batch_size,
    samples)`` at ``cfg.audio.sample_rate`` (``transform`` applied to each clip first)."""
    starts: list[float] = []
    clips: list[np.ndarray] = []
    for start, clip in iter_clips(path, cfg.audio, hop_seconds=hop_seconds):
        starts.append(start)
        clips.append(clip if transform is None else transform(clip))
        if len(clips) == batch_size:
            yield starts, np.stack(clips)
            starts, clips = [], []
    if clips:
        yield starts, np.stack(clips)


def musicnn_log_mel(clips: np.ndarray) -> np.ndarray:
    """musicnn's network input for a batch of clips (the package's only musicnn log-mel).

    Parameters
    ----------
    clips
        float32 ``(n, samples)`` (or ``(samples,)``) waveforms at 16 kHz, floats in about [-1, 1].

    Returns
    -------
    np.ndarray
        float32 ``(n, 96, frames)`` (or ``(96, frames)``): mel bands first, frames last,
        ``frames = 1 + samples // 256`` (centred STFT frames, 16 ms apart);
        ``log10(10000 * mel_power + 1)`` of ``melspectrogram(n_fft=512, hop_length=256, n_mels=96)``
        (librosa's, to within 1e-5).  The network itself takes patches frames first:
        ``musicnn_log_mel(y).T`` is a ``(frames, 96)`` input of
        :class:`~cultural_music.backbones.musicnn.MusicnnBackbone`.
    """
    y = np.asarray(clips, dtype=np.float32)
    if y.ndim not in (1, 2) or y.shape[-1] == 0:
        raise ParameterError(f"The 'clips' parameter of musicnn_log_mel must be (samples,) or (n, samples) with samples >= 1. "
                             f"Got shape {y.shape} instead.")
    mel = mel_power(y, sample_rate=MUSICNN_SAMPLE_RATE, n_fft=MUSICNN_N_FFT, hop_length=MUSICNN_HOP, n_mels=MUSICNN_N_MELS)
    return np.log10(10000.0 * mel + 1.0).astype(np.float32)


def log_mel(clips: np.ndarray, *, sample_rate: int, cfg: FeatureConfig) -> np.ndarray:
    """Log-mel features of one clip or a batch of clips.

    Parameters
    ----------
    clips
        float32 ``(samples,)`` or ``(n, samples)`` waveform(s) at ``sample_rate`` Hz.
    sample_rate
        Sample rate in Hz.
    cfg
        FFT size, hop, mel bands, frequency range (Hz) and dB range.

    Returns
    -------
    np.ndarray
        float32 ``(n_mels, frames)`` or ``(n, n_mels, frames)`` in 0..1; a silent clip gives 0s.
    """
    y = np.asarray(clips, dtype=np.float32)
    power = mel_power(y, sample_rate=sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
                      fmin=cfg.fmin, fmax=cfg.fmax)
    peak = power.max(axis=(-2, -1), keepdims=True)
    safe_peak = np.maximum(peak, _SILENCE)
    db = 10.0 * np.log10(np.maximum(power, _SILENCE) / safe_peak)
    scaled = (np.maximum(db, -cfg.top_db) + cfg.top_db) / cfg.top_db
    scaled = np.where(peak > _SILENCE, scaled, 0.0)
    return scaled.astype(np.float32)


def feature_shape(n_samples: int, cfg: FeatureConfig) -> tuple[int, int]:
    """``(rows, columns)`` produced for a clip of ``n_samples`` samples: ``(n_rows, frames)``
    (``n_rows`` = ``n_mels``), or ``(embedding size, patches)`` for embeddings."""
    return cfg.n_rows, cfg.n_frames(n_samples)
