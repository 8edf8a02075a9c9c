"""PyTorch port of the pretrained *musicnn* audio-tagging networks (Pons & Serra, 2019).

The weights ship with this package (``weights/MSD_musicnn.safetensors``,
``weights/MTT_musicnn.safetensors``, SHA-256 checked on load), converted once by
``scripts/convert_weights.py`` from the TensorFlow-1 checkpoints inside the ``musicnn==0.1.0``
wheel (ISC licence); neither TensorFlow nor the ``musicnn`` wheel is needed.

The architecture follows ``musicnn/models.py::build_musicnn`` layer by layer (names in brackets
are the TensorFlow variable scopes):

- input batch norm [batch_normalization] on the (frames, 96) log-mel patch;
- front-end: two timbral convs, kernels (7, 38) and (7, 67), 204 filters, time padded by 3,
  'valid' [conv2d, conv2d_1]; three temporal convs, kernels (128, 1), (64, 1), (32, 1), 51 filters,
  'same' [conv2d_2..4]; each ReLU -> batch norm [batch_normalization_1..5] -> max over frequency;
  concatenated -> 561 channels per frame;
- mid-end: three 1-D convs over time, kernel 7, 64 filters [conv2d_5..7], each ReLU -> batch norm
  [batch_normalization_6..8], the 2nd and 3rd with residual connections; the front-end output
  and the three mid-end outputs are concatenated -> 753 channels per frame;
- back-end: max and mean over time (753 each), interleaved [max_0, mean_0, max_1, ...] (TF's
  flatten of the stacked pools) -> batch norm [batch_normalization_9] -> dropout 0.5 -> dense 200
  + ReLU [dense] -> batch norm [batch_normalization_10] ("penultimate") -> dropout 0.5 -> dense 50
  [dense_1] -> sigmoid ("taggram").

All batch norms use TensorFlow's default epsilon 1e-3.
"""

from __future__ import annotations

import functools
from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cultural_music.config import MUSICNN_BACKBONES, MUSICNN_EMBEDDING_DIM, MUSICNN_HOP, MUSICNN_N_FFT, MUSICNN_N_MELS, MUSICNN_PATCH_FRAMES, MUSICNN_SAMPLE_RATE, n_patches
from cultural_music.errors import ModelLoadError, ParameterError
from cultural_music.backbones.packaged import load_weights
from cultural_music.backbones.runtime import mark_packaged, session_for

__all__ = [
    "SAMPLE_RATE",
    "N_FFT",
    "HOP",
    "N_MELS",
    "PATCH_FRAMES",
    "EMBEDDING_DIM",
    "MODEL_NAMES",
    "MSD_TAGS",
    "MTT_TAGS",
    "MusicnnBackbone",
    "load_musicnn",
    "patches",
    "covering_index",
    "covering_patches",
    "pretrained",
    "embed_logmels",
]

# The input and output sizes, defined once in the torch-free config module.
SAMPLE_RATE = MUSICNN_SAMPLE_RATE  #: Hz, mono
N_FFT = MUSICNN_N_FFT  #: samples (32 ms)
HOP = MUSICNN_HOP  #: samples (16 ms) between log-mel frames
N_MELS = MUSICNN_N_MELS  #: mel bands
PATCH_FRAMES = MUSICNN_PATCH_FRAMES  #: frames per network input patch (3 s)
EMBEDDING_DIM = MUSICNN_EMBEDDING_DIM  #: size of :meth:`MusicnnBackbone.embedding` ([mean_pool, max_pool])
_BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization default
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

MODEL_NAMES = MUSICNN_BACKBONES

# Tag order of the output layers, from musicnn/configuration.py.
MTT_TAGS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip
MSD_TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill",
    "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental",
    "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy",
    "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop",
    "sad", "House", "happy",
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# input pipeline
# --------------------------------------------------------------------------------------------
def patches(
    logmel: np.ndarray,
    n_frames: int = PATCH_FRAMES,
    hop: int = PATCH_FRAMES,
    pad: Literal["repeat", "zero"] = "repeat",
) -> np.ndarray:
    """Cut a log-mel spectrogram into fixed-length patches for the network.

    Parameters
    ----------
    logmel
        Shape (frames, n_mels): frames first, the transpose of
        :func:`cultural_music.features.compute.musicnn_log_mel`.
    n_frames
        Frames per patch (default 187 = 3 s).
    hop
        Frames between patch starts (default ``n_frames``: non-overlapping).  As in musicnn's
        ``batch_data``, patches start at ``0, hop, 2*hop, ...`` while a full patch fits; trailing
        frames that do not fill a patch are dropped.
    pad
        How an input shorter than ``n_frames`` is lengthened to one patch: ``"repeat"`` tiles it
        (musicnn's training setting ``pad_short: repeat-pad``), ``"zero"`` appends zeros (silence
        in this log scale).

    Returns
    -------
    np.ndarray
        float32, shape (n_patches, n_frames, n_mels), n_patches >= 1.
    """
    x = np.asarray(logmel, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ParameterError(
            "The 'logmel' parameter of patches must be a 2-D (frames, mels) array with at least "
            f"one frame. Got shape {x.shape} instead."
        )
    if int(n_frames) < 1 or int(hop) < 1:
        raise ParameterError(
            f"The 'n_frames' and 'hop' parameters of patches must be >= 1. "
            f"Got n_frames={n_frames!r}, hop={hop!r} instead."
        )
    if pad not in ("repeat", "zero"):
        raise ParameterError(
            f"The 'pad' parameter of patches must be 'repeat' or 'zero'. Got {pad!r} instead."
        )
    n_frames, hop = int(n_frames), int(hop)
    if x.shape[0] < n_frames:
        if pad == "repeat":
            x = np.tile(x, (-(-n_frames // x.shape[0]), 1))[:n_frames]
        else:
            x = np.pad(x, ((0, n_frames - x.shape[0]), (0, 0)))
    starts = range(0, x.shape[0] - n_frames + 1, hop)
    return np.stack([x[s : s + n_frames] for s in starts]).astype(np.float32, copy=False)


def covering_index(frames: int, n_frames: int = PATCH_FRAMES) -> np.ndarray:
    """The 3 s patches that cover every frame of a clip, as frame numbers: THE patching rule
    (cached embeddings, fine-tuning and the ONNX graph all gather by it).

    The fewest ``n_frames`` windows (:func:`~cultural_music.config.n_patches`:
    ``ceil(frames / n_frames)``), spread evenly from the first frame to the last (overlapping a
    little where needed; the last one ends at the last frame).  A clip of at most ``n_frames``
    frames gives one patch, repeat-padded (musicnn's ``pad_short: repeat-pad``).

    Returns
    -------
    np.ndarray
        int64 ``(patches, n_frames)``: ``frames_first[index]`` are the patches.  A gather by fixed
        indices, which traces and exports to ONNX exactly.
    """
    if frames <= n_frames:
        index = np.arange(n_frames)[None] % frames
    else:
        starts = np.round(np.linspace(0, frames - n_frames, n_patches(frames, n_frames))).astype(int)
        index = starts[:, None] + np.arange(n_frames)[None]
    return index.astype(np.int64)


def covering_patches(logmels: ArrayT, index: ArrayT | None = None) -> ArrayT:
    """Cut clips into their :func:`covering_index` patches (numpy arrays or torch tensors).

    Parameters
    ----------
    logmels
        float32 ``(batch, frames, mels)``: frames first (the transpose of the ``(mels, frames)``
        features).
    index
        ``covering_index(frames)`` (default), or that index precomputed (e.g. a module buffer).

    Returns
    -------
    np.ndarray or torch.Tensor
        ``(batch * patches, n_frames, mels)``, clip after clip (C-contiguous for numpy).
    """
    b, t, m = logmels.shape
    if index is None:
        index = covering_index(int(t))
    if isinstance(logmels, torch.Tensor) and isinstance(index, np.ndarray):
        index = torch.from_numpy(index)
    out = logmels[:, index.reshape(-1)].reshape(b * index.shape[0], index.shape[1], m)
    return np.ascontiguousarray(out) if isinstance(out, np.ndarray) else out


@functools.lru_cache(maxsize=2)
def pretrained(name: str = "MSD_musicnn") -> "MusicnnBackbone":
    """:func:`load_musicnn`, loaded once per process (frozen: no gradients, eval mode); its
    embeddings run on ONNX Runtime where available (:mod:`~cultural_music.backbones.runtime`)."""
    model = load_musicnn(name)
    for p in model.parameters():
        p.requires_grad_(False)
    return mark_packaged(model, name)


def embed_logmels(model: "MusicnnBackbone", logmels: np.ndarray, *, batch_size: int | None = None) -> np.ndarray:
    """Embeddings of every covering 3 s patch of a batch of clips.

    Parameters
    ----------
    model
        The backbone, used in eval mode without gradients.  The packaged frozen one
        (:func:`pretrained`) runs on ONNX Runtime where available
        (:func:`~cultural_music.backbones.runtime.session_for`), any other on torch.
    logmels
        float32 (n, 96, frames) clips (all the same length), e.g. from
        :func:`cultural_music.features.compute.musicnn_log_mel`.
    batch_size
        Patches per forward pass (bounds memory: about 20 MB per patch); default 8 on torch,
        the fastest measured on ONNX Runtime.

    Returns
    -------
    np.ndarray
        float32 (n, 1506, patches): :meth:`MusicnnBackbone.embedding` of each patch, patches as
        from :func:`covering_patches`.
    """
    x = np.asarray(logmels, dtype=np.float32)
    if x.ndim != 3 or x.shape[1] != N_MELS:
        raise ParameterError(
            f"The 'logmels' parameter of embed_logmels must have shape (n, {N_MELS}, frames). "
            f"Got {x.shape} instead."
        )
    if x.shape[0] == 0:
        return np.zeros((0, EMBEDDING_DIM, 1), dtype=np.float32)
    flat = covering_patches(x.transpose(0, 2, 1))
    if x.shape[2] >= PATCH_FRAMES:
        # each patch stored mels-major, as cached embeddings have always been computed: the
        # convolutions round differently (about 1e-5) on other memory layouts
        flat = np.ascontiguousarray(flat.transpose(0, 2, 1)).transpose(0, 2, 1)
    emb = _patch_embeddings(model, flat, batch_size).reshape(len(x), -1, EMBEDDING_DIM)
    return np.ascontiguousarray(emb.transpose(0, 2, 1), dtype=np.float32)


def _patch_embeddings(model: "MusicnnBackbone", flat: np.ndarray, batch_size: int | None) -> np.ndarray:
    """(patches, 187, 96) -> (patches, 1506): on ONNX Runtime for the packaged frozen network,
    else torch (eval mode, no gradients)."""
    session = session_for(model)
    if session is not None:
        size = batch_size or session.batch_size
        return np.concatenate([session.run(flat[i : i + size]) for i in range(0, len(flat), size)])
    size = batch_size or 8
    outs = []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(flat), size):
            outs.append(model.embedding(torch.from_numpy(flat[i : i + size])).numpy())
    model.train(was_training)
    return np.concatenate(outs)


# --------------------------------------------------------------------------------------------
# network
# --------------------------------------------------------------------------------------------
class _FrontConv(nn.Module):
    """Conv over (time, freq) -> ReLU -> batch norm -> max over frequency: (B,1,T,F) -> (B,C,T)."""

    def __init__(self, out_ch: int, kernel: tuple[int, int], same_time: bool) -> None:
        super().__init__()
        kt = kernel[0]
        # TF 'same' for an even kernel pads (k-1)//2 before and the rest after; the timbral
        # branch pads 3 frames each side, then convolves 'valid'.
        self.time_pad = ((kt - 1) // 2, kt - 1 - (kt - 1) // 2) if same_time else (3, 3)
        self.conv = nn.Conv2d(1, out_ch, kernel)
        self.bn = nn.BatchNorm2d(out_ch, eps=_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, *self.time_pad))
        return self.bn(F.relu(self.conv(x))).amax(dim=3)


class _MidConv(nn.Module):
    """1-D conv over time (kernel 7, zero padding 3) -> ReLU -> batch norm: (B,C,T) -> (B,64,T)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, 7, padding=3)
        self.bn = nn.BatchNorm1d(out_ch, eps=_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class MusicnnBackbone(nn.Module):
    """The musicnn network (``build_musicnn`` with 64 mid-end filters, 200 back-end units).

    Use :func:`load_musicnn` to get it with pretrained weights (in eval mode).

    Parameters
    ----------
    n_tags
        Output units (50 for both pretrained models).
    tags
        Names of the output units, in order (optional).
    """

    def __init__(self, n_tags: int = 50, tags: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.tags: tuple[str, ...] | None = tags
        self.input_bn = nn.BatchNorm2d(1, eps=_BN_EPS)
        timbral_filters, temporal_filters = int(1.6 * 128), int(1.6 * 32)  # 204, 51
        self.frontend = nn.ModuleList(
            [
                _FrontConv(timbral_filters, (7, int(0.4 * N_MELS)), same_time=False),
                _FrontConv(timbral_filters, (7, int(0.7 * N_MELS)), same_time=False),
                _FrontConv(temporal_filters, (128, 1), same_time=True),
                _FrontConv(temporal_filters, (64, 1), same_time=True),
                _FrontConv(temporal_filters, (32, 1), same_time=True),
            ]
        )
        front_ch = 2 * timbral_filters + 3 * temporal_filters  # 561
        self.midend = nn.ModuleList(
            [_MidConv(front_ch, 64), _MidConv(64, 64), _MidConv(64, 64)]
        )
        self.pool_dim = front_ch + 3 * 64  # 753
        self.pool_bn = nn.BatchNorm1d(2 * self.pool_dim, eps=_BN_EPS)
        self.dense = nn.Linear(2 * self.pool_dim, 200)
        self.dense_bn = nn.BatchNorm1d(200, eps=_BN_EPS)
        self.output = nn.Linear(200, n_tags)
        self.dropout = nn.Dropout(0.5)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.unsqueeze(0)
        if x.ndim != 3 or x.shape[2] != N_MELS or x.shape[1] < 1:
            raise ParameterError(
                "The 'x' parameter of MusicnnBackbone.forward must have shape "
                f"(batch, frames, {N_MELS}). Got {tuple(x.shape)} instead."
            )
        return x.to(dtype=self.dense.weight.dtype, device=self.dense.weight.device)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mid-end feature map, shape (batch, 753, frames): [front-end 561, cnn1, cnn2, cnn3]."""
        x = self._check_input(x)
        h = self.input_bn(x.unsqueeze(1))  # (B, 1, T, 96)
        front = torch.cat([block(h) for block in self.frontend], dim=1)  # (B, 561, T)
        c1 = self.midend[0](front)
        c2 = self.midend[1](c1) + c1
        c3 = self.midend[2](c2) + c2
        return torch.cat([front, c1, c2, c3], dim=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the network.

        Parameters
        ----------
        x
            Log-mel patches, shape (batch, frames, 96) (frames = 187 for the trained 3 s input;
            other lengths work), or a single (frames, 96) patch.

        Returns
        -------
        dict
            ``mean_pool`` (batch, 753) and ``max_pool`` (batch, 753): temporal mean / max of the
            mid-end features; ``penultimate`` (batch, 200): dense layer after its batch norm;
            ``logits`` (batch, 50) and ``taggram`` (batch, 50) = sigmoid(logits).
        """
        feats = self.features(x)
        max_pool = feats.amax(dim=2)
        mean_pool = feats.mean(dim=2)
        # TF flattens concat([max, mean], axis=2) of shape (B, 753, 2): interleaved channels
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)
        h = self.dropout(self.pool_bn(pooled))
        penultimate = self.dense_bn(F.relu(self.dense(h)))
        logits = self.output(self.dropout(penultimate))
        return {
            "mean_pool": mean_pool,
            "max_pool": max_pool,
            "penultimate": penultimate,
            "logits": logits,
            "taggram": torch.sigmoid(logits),
        }

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding [mean_pool, max_pool], shape (batch, 1506); input as :meth:`forward`."""
        feats = self.features(x)
        return torch.cat([feats.mean(dim=2), feats.amax(dim=2)], dim=1)


def load_musicnn(name: str = "MSD_musicnn") -> MusicnnBackbone:
    """Build a pretrained musicnn network from the weights shipped in the package.

    Parameters
    ----------
    name
        ``"MSD_musicnn"`` (Million Song Dataset tags) or ``"MTT_musicnn"`` (MagnaTagATune tags).

    Returns
    -------
    MusicnnBackbone
        float32, on CPU, in eval mode; ``.tags`` lists the 50 output tags.

    Raises
    ------
    ParameterError
        ``name`` is not one of :data:`MODEL_NAMES`.
    ModelLoadError
        The packaged weights file is missing, or edited/damaged (SHA-256 mismatch).
    """
    if name not in MODEL_NAMES:
        raise ParameterError(
            f"The 'name' parameter of load_musicnn must be one of {MODEL_NAMES}. "
            f"Got {name!r} instead."
        )
    state, _ = load_weights(name)
    model = MusicnnBackbone(n_tags=50, tags=MSD_TAGS if name.startswith("MSD") else MTT_TAGS)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{name}.safetensors: weights do not fit the network: {exc}") from exc
    return model.eval()
