"""PyTorch port of YAMNet, Google's AudioSet-trained MobileNet-v1 audio event network.

The model (Apache-2.0, https://github.com/tensorflow/models/tree/master/research/audioset/yamnet)
predicts 521 AudioSet classes for each 0.96 s patch of a 16 kHz recording; its 1024-d patch
embedding (the global average pool before the classifier) is a general-purpose audio feature.
The weights ship with this package (``weights/yamnet.safetensors``, converted once from the
TensorFlow SavedModel by ``scripts/convert_weights.py``); TensorFlow is not needed.

The front end (:func:`yamnet_log_mel`, :func:`yamnet_patches`) is plain numpy, so an ONNX or
other runtime can reuse it; it follows ``yamnet/features.py``:

- the waveform is zero-padded at the end to ``0.975 s + k * 0.48 s`` (at least one whole patch;
  whole patch hops after that), as ``features.pad_waveform`` does;
- frames of 25 ms (400 samples), 10 ms (160 samples) apart, no centring, periodic Hann window,
  512-point FFT, magnitude (not power);
- 64 triangular mel bands 125-7500 Hz on the HTK mel scale (``tf.signal.linear_to_mel_weight_matrix``);
- ``log(mel + 0.001)``;
- patches of 96 frames (0.96 s), 48 frames (0.48 s) apart.

The body (:class:`YamnetBackbone`) is MobileNet-v1 on the (96 frames, 64 mels) patch as a
one-channel image: a 3x3 stride-2 conv (32 filters), then 13 depthwise-separable blocks (3x3
depthwise conv -> BN -> ReLU -> 1x1 conv -> BN -> ReLU), every conv without bias and followed by
batch norm (epsilon 1e-4, no scale) and ReLU, TensorFlow 'same' padding (for stride 2 on an even
size: 0 before, 1 after); global average pool -> 1024-d embedding; dense 1024 -> 521 logits;
sigmoid -> scores.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cultural_music.errors import ModelLoadError, ParameterError
from cultural_music.backbones.packaged import load_weights
from cultural_music.backbones.runtime import mark_packaged, session_for

__all__ = [
    "SAMPLE_RATE", "WINDOW", "HOP", "N_FFT", "N_MELS", "PATCH_FRAMES", "PATCH_HOP",
    "EMBEDDING_DIM", "MID_TAPS", "MID_EMBEDDING_DIM", "N_CLASSES", "pad_waveform", "mel_matrix", "yamnet_log_mel",
    "yamnet_patches", "YamnetBackbone", "load_yamnet", "pretrained_yamnet", "embed_clip", "embed_waveforms",
]  # fmt: skip

SAMPLE_RATE = 16000  #: Hz, mono
WINDOW = 400  #: samples per STFT frame (25 ms)
HOP = 160  #: samples between STFT frames (10 ms)
N_FFT = 512  #: FFT points (window zero-padded)
N_MELS = 64  #: mel bands
MEL_MIN_HZ, MEL_MAX_HZ = 125.0, 7500.0
LOG_OFFSET = 0.001  #: added to the mel magnitude before the natural log
PATCH_FRAMES = 96  #: frames per network input patch (0.96 s)
PATCH_HOP = 48  #: frames between patch starts (0.48 s)
EMBEDDING_DIM = 1024
#: indices in :attr:`YamnetBackbone.layers` whose outputs make the mid-level embedding: the 1x1
#: convs ending separable blocks 5 (256 channels, a (12, 8) map of the patch) and 7 (512, (6, 4))
MID_TAPS = (9, 13)
MID_EMBEDDING_DIM = 2 * (256 + 512)  #: mean and max over time and mel of each tapped map: 1536
N_CLASSES = 521
_MIN_SAMPLES = WINDOW + (PATCH_FRAMES - 1) * HOP  # 15600 = 0.975 s: one patch
_BN_EPS = 1e-4
# (stride, output channels) of the first conv and the 13 separable blocks (yamnet.py layer defs)
_LAYERS = ((2, 32), (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
           (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024))  # fmt: skip


# --------------------------------------------------------------------------------------------
# front end (numpy)
# --------------------------------------------------------------------------------------------
def _check_waveform(y: np.ndarray, owner: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0 or not np.issubdtype(y.dtype, np.floating):
        raise ParameterError(
            f"The 'waveform_16k' parameter of {owner} must be a non-empty 1-D float array. "
            f"Got dtype {y.dtype}, shape {y.shape} instead."
        )
    return y.astype(np.float32, copy=False)


def pad_waveform(waveform_16k: np.ndarray) -> np.ndarray:
    """Zero-pad at the end to ``15600 + k * 7680`` samples (>= the input, k >= 0), as YAMNet does:
    at least one whole 0.96 s patch, and the tail rounded up to a whole patch hop.

    Shape (samples,) -> (padded samples,), float32.
    """
    y = _check_waveform(waveform_16k, "pad_waveform")
    hop = PATCH_HOP * HOP
    hops = -(-max(0, y.size - _MIN_SAMPLES) // hop)
    return np.pad(y, (0, _MIN_SAMPLES + hops * hop - y.size))


@functools.lru_cache(maxsize=1)
def mel_matrix() -> np.ndarray:
    """float32 (257, 64) weights from |STFT| bins to mel bands, as
    ``tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125, 7500)`` (HTK mel, DC bin zero)."""

    def mel(hz: np.ndarray) -> np.ndarray:
        return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)

    bins = mel(np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)[1:])[:, None]
    edges = np.linspace(mel(MEL_MIN_HZ), mel(MEL_MAX_HZ), N_MELS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    w = np.maximum(0.0, np.minimum((bins - lower) / (center - lower), (upper - bins) / (upper - center)))
    return np.pad(w, ((1, 0), (0, 0))).astype(np.float32)


def yamnet_log_mel(waveform_16k: np.ndarray) -> np.ndarray:
    """YAMNet's log-mel spectrogram of a 16 kHz mono waveform (padded first, see :func:`pad_waveform`).

    Parameters
    ----------
    waveform_16k
        Shape (samples,), floats in about [-1, 1], sampled at 16 kHz.

    Returns
    -------
    np.ndarray
        float32 (frames, 64), ``frames = 96 + 48 * k``, 10 ms apart: ``log(|STFT| @ mel + 0.001)``.
    """
    y = pad_waveform(_check_waveform(waveform_16k, "yamnet_log_mel")).astype(np.float64)
    n_frames = 1 + (y.size - WINDOW) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(y, WINDOW)[::HOP][:n_frames]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)  # periodic Hann
    magnitude = np.abs(np.fft.rfft(frames * window, n=N_FFT, axis=1))
    return np.log(magnitude @ mel_matrix().astype(np.float64) + LOG_OFFSET).astype(np.float32)


def yamnet_patches(log_mel: np.ndarray) -> np.ndarray:
    """Cut a (frames, 64) log-mel spectrogram into (n_patches, 96, 64) float32 patches, 48 frames
    apart (``n_patches = 1 + (frames - 96) // 48``; frames past the last whole patch are dropped).

    An input shorter than 96 frames (not from :func:`yamnet_log_mel`) is refused.
    """
    x = np.asarray(log_mel, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != N_MELS or x.shape[0] < PATCH_FRAMES:
        raise ParameterError(
            f"The 'log_mel' parameter of yamnet_patches must have shape (frames >= {PATCH_FRAMES}, "
            f"{N_MELS}); use yamnet_log_mel, which pads. Got {x.shape} instead."
        )
    view = np.lib.stride_tricks.sliding_window_view(x, PATCH_FRAMES, axis=0)[::PATCH_HOP]
    return view.transpose(0, 2, 1).copy()  # a writable, contiguous copy


# --------------------------------------------------------------------------------------------
# network (torch)
# --------------------------------------------------------------------------------------------
def _same_pad(x: torch.Tensor, stride: int, kernel: int = 3) -> torch.Tensor:
    """TensorFlow 'same' padding of the last two dims: for stride 2 it is asymmetric (extra after)."""
    pads: list[int] = []
    for size in (x.shape[3], x.shape[2]):  # F.pad order: last dim first
        total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class _ConvBN(nn.Module):
    """Conv (no bias, TF 'same') -> batch norm (eps 1e-4, scale 1) -> ReLU: (B,Ci,H,W) -> (B,Co,H',W')."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1) -> None:
        super().__init__()
        self.stride, self.kernel = stride, kernel
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel > 1:
            x = _same_pad(x, self.stride, self.kernel)
        return F.relu(self.bn(self.conv(x)))


class YamnetBackbone(nn.Module):
    """YAMNet's MobileNet-v1 body and classifier.  Use :func:`load_yamnet` for the pretrained one.

    Parameters
    ----------
    labels
        The 521 AudioSet class names, in output order (optional).
    """

    def __init__(self, labels: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.labels = labels
        layers: list[nn.Module] = [_ConvBN(1, _LAYERS[0][1], 3, _LAYERS[0][0])]
        c_in = _LAYERS[0][1]
        for stride, c_out in _LAYERS[1:]:
            layers += [_ConvBN(c_in, c_in, 3, stride, groups=c_in), _ConvBN(c_in, c_out, 1, 1)]
            c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(EMBEDDING_DIM, N_CLASSES)

    def _image(self, patches: torch.Tensor) -> torch.Tensor:
        """(batch, 96, 64) log-mel patches (or one (96, 64) patch) -> the (batch, 1, 96, 64) network input."""
        x = patches.unsqueeze(0) if patches.ndim == 2 else patches
        if x.ndim != 3 or tuple(x.shape[1:]) != (PATCH_FRAMES, N_MELS):
            raise ParameterError(
                "The 'patches' parameter of YamnetBackbone must have shape "
                f"(batch, {PATCH_FRAMES}, {N_MELS}). Got {tuple(patches.shape)} instead."
            )
        return x.to(dtype=self.classifier.weight.dtype, device=self.classifier.weight.device).unsqueeze(1)

    def embedding(self, patches: torch.Tensor) -> torch.Tensor:
        """(batch, 96, 64) log-mel patches (or one (96, 64) patch) -> (batch, 1024) embeddings."""
        return self.layers(self._image(patches)).mean(dim=(2, 3))

    def mid_embedding(self, patches: torch.Tensor) -> torch.Tensor:
        """(batch, 96, 64) log-mel patches -> (batch, 1536) mid-level embeddings: for each layer of
        :data:`MID_TAPS`, the mean and then the max of its feature map over time and mel bands.

        The middle of the network keeps more of the sound's fine structure (phones, strokes) than
        the AudioSet-shaped last layer, and runs only the first 14 of its 27 conv layers."""
        x, out = self._image(patches), []
        for i, layer in enumerate(self.layers[: MID_TAPS[-1] + 1]):
            x = layer(x)
            if i in MID_TAPS:
                out += [x.mean(dim=(2, 3)), x.amax(dim=(2, 3))]
        return torch.cat(out, dim=1)

    def forward(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the network on log-mel patches (see :meth:`embedding`).

        Returns ``embeddings`` (batch, 1024), ``logits`` (batch, 521) and ``scores`` (batch, 521)
        = sigmoid(logits), one row per 0.96 s patch.
        """
        emb = self.embedding(patches)
        logits = self.classifier(emb)
        return {"embeddings": emb, "logits": logits, "scores": torch.sigmoid(logits)}


def load_yamnet() -> YamnetBackbone:
    """YAMNet with the packaged pretrained weights (SHA-256 checked), float32, CPU, eval mode;
    ``.labels`` holds the 521 AudioSet class names.

    Raises :class:`ModelLoadError` naming the weights file when it is missing, edited or damaged.
    """
    state, meta = load_weights("yamnet")
    labels = tuple(json.loads(meta["labels"])) if "labels" in meta else None
    model = YamnetBackbone(labels=labels)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"yamnet.safetensors: weights do not fit the network: {exc}") from exc
    return model.eval()


@functools.lru_cache(maxsize=1)
def pretrained_yamnet() -> YamnetBackbone:
    """:func:`load_yamnet`, loaded once per process (frozen: no gradients, eval mode), its conv
    weights in ``channels_last`` memory format: 2.6x the patches/s of the default layout on CPU
    (depthwise convs; ``bench/archive_flops.py``), embeddings equal to 2.5e-6 of their largest value.
    Its embeddings run on ONNX Runtime where available (:mod:`~cultural_music.backbones.runtime`)."""
    model = load_yamnet().to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    return mark_packaged(model, "yamnet")


def embed_clip(
    waveform_16k: np.ndarray, model: YamnetBackbone | None = None, *, batch_size: int | None = None
) -> np.ndarray:
    """Clip embedding: mean and max over the clip's 0.96 s patches of the 1024-d YAMNet embedding.

    Parameters
    ----------
    waveform_16k
        Shape (samples,), 16 kHz mono floats.
    model
        Default :func:`pretrained_yamnet`.
    batch_size
        Patches per forward pass (default: see :func:`embed_waveforms`).

    Returns
    -------
    np.ndarray
        float32 (2048,): ``[mean over patches (1024), max over patches (1024)]``.
    """
    model = model if model is not None else pretrained_yamnet()
    was_training = model.training
    model.eval()
    emb = embed_waveforms(_check_waveform(waveform_16k, "embed_clip")[None], model, batch_size=batch_size)[0]  # (1024, p)
    model.train(was_training)
    return np.concatenate([emb.mean(axis=1), emb.max(axis=1)]).astype(np.float32)


def embed_waveforms(clips: np.ndarray, model: YamnetBackbone | None = None, *, batch_size: int | None = None,
                    mid: bool = False) -> np.ndarray:
    """Patch embeddings of a batch of equal-length clips (the ``"yamnet-embedding"`` features).

    Parameters
    ----------
    clips
        float32 ``(n, samples)`` 16 kHz mono waveforms.
    model
        Default :func:`pretrained_yamnet`, which runs on ONNX Runtime where available
        (:func:`~cultural_music.backbones.runtime.session_for`); any other module runs on torch.
    batch_size
        Patches per forward pass (default 64).
    mid
        The mid-level embedding (:meth:`YamnetBackbone.mid_embedding`, the
        ``"yamnet-mid-embedding"`` features, always run by torch) instead of the last layer's.

    Returns
    -------
    np.ndarray
        float32 ``(n, 1024, patches)`` (``(n, 1536, patches)`` with ``mid``), one column per 0.96 s patch (0.48 s apart; each clip
        zero-padded to whole patches as :func:`pad_waveform` does).
    """
    y = np.asarray(clips, dtype=np.float32)
    if y.ndim != 2 or y.shape[1] == 0:
        raise ParameterError(f"The 'clips' parameter of embed_waveforms must be (n, samples). Got shape {y.shape} instead.")
    model = model if model is not None else pretrained_yamnet()
    patches = np.concatenate([yamnet_patches(yamnet_log_mel(clip)) for clip in y])  # (n * p, 96, 64)
    session = None if mid else session_for(model)
    size = batch_size or (session.batch_size if session is not None else 64)
    if session is not None:
        emb = np.concatenate([session.run(patches[i : i + size]) for i in range(0, len(patches), size)])
    else:
        net = model.mid_embedding if mid else model.embedding
        with torch.inference_mode():
            emb = torch.cat([net(torch.from_numpy(patches[i : i + size])) for i in range(0, len(patches), size)]).numpy()
    dim = MID_EMBEDDING_DIM if mid else EMBEDDING_DIM
    return emb.reshape(len(y), -1, dim).transpose(0, 2, 1).astype(np.float32, copy=True)
