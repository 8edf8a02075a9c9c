"""Whole networks that start from the waveform: the ONNX graph of the ``yamnet``, ``yamnet-mid`` and ``fusion``
models (their front ends written in torch, so onnxruntime needs no numpy feature code).

:class:`WaveformNetwork` takes 16 kHz clips ``(batch, 1, samples)`` (``samples`` fixed by the
model's clip length) and returns logits ``(batch, n_classes)``.  The front ends repeat the numpy
ones exactly (to float32 rounding): :class:`YamnetLogMel` is
:func:`~cultural_music.backbones.yamnet.yamnet_log_mel` (end-padding to whole patches, 25 ms
periodic-Hann frames every 10 ms, 512-point |FFT|, 64 HTK mels, ``log(x + 0.001)``) and
:class:`MusicnnLogMel` is :func:`~cultural_music.features.compute.musicnn_log_mel` (centred
512-sample frames every 256, zero-padded, periodic Hann, power, Slaney mels,
``log10(10000 x + 1)``).  The STFTs are 1-D convolutions with fixed cosine / sine kernels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cultural_music.backbones import yamnet as ym
from cultural_music.config import (EMBEDDING_DIMS, FUSION_EMBEDDING, MUSICNN_EMBEDDING_DIM, MUSICNN_HOP, MUSICNN_N_FFT, MUSICNN_N_MELS,
                                   MUSICNN_SAMPLE_RATE, YAMNET_MID_EMBEDDING, Config)
from cultural_music.features.compute import fusion_index
from cultural_music.features.melspec import mel_filterbank

__all__ = ["YamnetLogMel", "MusicnnLogMel", "WaveformNetwork", "waveform_network"]


def _dft_kernels(window: np.ndarray, n_fft: int) -> torch.Tensor:
    """``(2 * (n_fft // 2 + 1), 1, len(window))`` conv kernels: windowed cos then -sin rows, so a
    stride-``hop`` conv1d gives the real and imaginary STFT parts."""
    n = np.arange(len(window))[None]
    k = np.arange(n_fft // 2 + 1)[:, None]
    phase = 2 * np.pi * k * n / n_fft
    kernels = np.concatenate([np.cos(phase), -np.sin(phase)]) * window[None]
    return torch.from_numpy(kernels.astype(np.float32))[:, None]


def _periodic_hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


class YamnetLogMel(nn.Module):
    """``(batch, samples)`` 16 kHz -> ``(batch, frames, 64)`` YAMNet log-mel (as the numpy one)."""

    def __init__(self, n_samples: int) -> None:
        super().__init__()
        self.pad = int(ym.pad_waveform(np.zeros(n_samples, dtype=np.float32)).size) - n_samples
        self.register_buffer("kernels", _dft_kernels(_periodic_hann(ym.WINDOW), ym.N_FFT), persistent=False)
        self.register_buffer("mel", torch.from_numpy(ym.mel_matrix()), persistent=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        spec = F.conv1d(F.pad(y, (0, self.pad))[:, None], self.kernels, stride=ym.HOP)  # (batch, 2 * 257, frames)
        re, im = spec.chunk(2, dim=1)
        magnitude = torch.sqrt(re * re + im * im).transpose(1, 2)  # (batch, frames, 257)
        return torch.log(magnitude @ self.mel + ym.LOG_OFFSET)


class MusicnnLogMel(nn.Module):
    """``(batch, samples)`` 16 kHz -> ``(batch, frames, 96)`` musicnn log-mel, frames first."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernels", _dft_kernels(_periodic_hann(MUSICNN_N_FFT), MUSICNN_N_FFT), persistent=False)
        basis = mel_filterbank(MUSICNN_SAMPLE_RATE, MUSICNN_N_FFT, MUSICNN_N_MELS)  # (96, 257)
        self.register_buffer("mel", torch.from_numpy(np.ascontiguousarray(basis.T)), persistent=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        half = MUSICNN_N_FFT // 2
        spec = F.conv1d(F.pad(y, (half, half))[:, None], self.kernels, stride=MUSICNN_HOP)
        re, im = spec.chunk(2, dim=1)
        power = (re * re + im * im).transpose(1, 2)  # (batch, frames, 257)
        return torch.log10(10000.0 * (power @ self.mel) + 1.0)


class WaveformNetwork(nn.Module):
    """Front end(s) + frozen backbone(s) + head: ``(batch, 1, samples)`` -> ``(batch, n_classes)``.

    Parameters
    ----------
    head
        The model trained on cached ``yamnet-embedding`` or ``fusion-embedding`` features.
    n_samples
        Samples of one clip (16 kHz).
    musicnn
        The musicnn backbone for a fusion model (``None``: YAMNet only).
    mid
        YAMNet's mid-level embedding (the ``yamnet-mid`` model) instead of its last layer's.
    """

    def __init__(self, head: nn.Module, n_samples: int, musicnn: nn.Module | None = None, mid: bool = False) -> None:
        super().__init__()
        self.mid = mid
        from cultural_music.backbones.musicnn import covering_index

        self.head, self.yamnet, self.musicnn = head, ym.pretrained_yamnet(), musicnn
        self.yamnet_front = YamnetLogMel(n_samples)
        frames = 1 + (n_samples + self.yamnet_front.pad - ym.WINDOW) // ym.HOP
        starts = np.arange(0, frames - ym.PATCH_FRAMES + 1, ym.PATCH_HOP)
        self.register_buffer("yamnet_index", torch.from_numpy(starts[:, None] + np.arange(ym.PATCH_FRAMES)[None]), persistent=False)
        if musicnn is not None:
            self.musicnn_front = MusicnnLogMel()
            self.register_buffer("musicnn_index", torch.from_numpy(covering_index(1 + n_samples // MUSICNN_HOP)), persistent=False)
            self.register_buffer("fusion_index", torch.from_numpy(fusion_index(n_samples)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x[:, 0]
        n, p = y.shape[0], self.yamnet_index.shape[0]
        mel = self.yamnet_front(y)  # (batch, frames, 64)
        patches = mel[:, self.yamnet_index.reshape(-1)].reshape(n * p, ym.PATCH_FRAMES, ym.N_MELS)
        net = self.yamnet.mid_embedding if self.mid else self.yamnet.embedding
        emb = net(patches).reshape(n, p, -1).transpose(1, 2)  # (batch, 1024 or 1536, p)
        if self.musicnn is not None:
            from cultural_music.backbones.musicnn import covering_patches

            pm = self.musicnn_index.shape[0]
            m_patches = covering_patches(self.musicnn_front(y), self.musicnn_index)
            m_emb = self.musicnn.embedding(m_patches).reshape(n, pm, MUSICNN_EMBEDDING_DIM).transpose(1, 2)
            emb = torch.cat([m_emb[:, :, self.fusion_index], emb], dim=1)  # (batch, 2530, p)
        return self.head(emb[:, None])


def waveform_network(head: nn.Module, cfg: Config) -> WaveformNetwork:
    """The whole network of a yamnet, yamnet-mid or fusion model folder's ``head`` and config (eval mode)."""
    musicnn = None
    if cfg.features.kind == FUSION_EMBEDDING:
        from cultural_music.backbones.musicnn import pretrained

        musicnn = pretrained(cfg.features.backbone.split("+")[0])
    assert cfg.features.n_rows in EMBEDDING_DIMS.values()
    return WaveformNetwork(head, cfg.audio.clip_samples, musicnn, mid=cfg.features.kind == YAMNET_MID_EMBEDDING).eval()
