"""The YAMNet port (backbones/yamnet.py): numpy front end and PyTorch MobileNet-v1 body with the
packaged weights, against outputs of the original TensorFlow graph
(../shared/data/reference/yamnet_reference.npz, four inputs; skipped, saying why, without it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cultural_music.backbones import yamnet as ym
from cultural_music.errors import ParameterError

from conftest import SHARED

REFERENCE = SHARED / "reference" / "yamnet_reference.npz"
INPUTS = ("chirp", "noise", "short", "dog_bark")
needs_reference = pytest.mark.skipif(not REFERENCE.exists(), reason=f"reference outputs not found at {REFERENCE}")


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def model() -> ym.YamnetBackbone:
    return ym.load_yamnet()


@needs_reference
@pytest.mark.parametrize("name", INPUTS)
def test_log_mel_matches_tensorflow(name: str, reference: dict[str, np.ndarray]) -> None:
    ref = reference[f"{name}/log_mel"]
    got = ym.yamnet_log_mel(reference[f"{name}/waveform_16k"])
    assert got.dtype == np.float32 and got.shape == ref.shape
    # float32 TF vs float64 numpy: log of a tiny magnitude differs most in near-silent bins
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-2)
    loud = ref > -3.0  # mel magnitude > 0.05
    np.testing.assert_allclose(got[loud], ref[loud], rtol=0, atol=1e-4)


@needs_reference
@pytest.mark.parametrize("name", INPUTS)
def test_scores_match_tensorflow(name: str, model: ym.YamnetBackbone, reference: dict[str, np.ndarray]) -> None:
    ref = reference[f"{name}/scores"]
    with torch.no_grad():
        ours = model(torch.from_numpy(ym.yamnet_patches(ym.yamnet_log_mel(reference[f"{name}/waveform_16k"]))))
        body = model(torch.from_numpy(ym.yamnet_patches(reference[f"{name}/log_mel"])))  # the body alone
    assert ours["scores"].shape == ref.shape and ours["embeddings"].shape == (len(ref), ym.EMBEDDING_DIM)
    np.testing.assert_allclose(ours["scores"].numpy(), ref, rtol=0, atol=1e-4)
    np.testing.assert_allclose(body["scores"].numpy(), ref, rtol=0, atol=2e-5)


@needs_reference
def test_embed_clip_pools_patch_embeddings(model: ym.YamnetBackbone, reference: dict[str, np.ndarray]) -> None:
    y = reference["dog_bark/waveform_16k"]
    clip = ym.embed_clip(y, model, batch_size=3)  # batches of 3 over 10 patches
    with torch.no_grad():
        emb = model.embedding(torch.from_numpy(ym.yamnet_patches(ym.yamnet_log_mel(y)))).numpy()
    assert clip.shape == (2 * ym.EMBEDDING_DIM,) and clip.dtype == np.float32
    np.testing.assert_allclose(clip[: ym.EMBEDDING_DIM], emb.mean(0), rtol=1e-5, atol=1e-5)  # batching changes float order
    np.testing.assert_allclose(clip[ym.EMBEDDING_DIM :], emb.max(0), rtol=1e-5, atol=1e-5)
    assert not model.training


def test_pretrained_labels_and_frozen() -> None:
    model = ym.pretrained_yamnet()
    assert model is ym.pretrained_yamnet() and not model.training
    assert model.labels is not None and len(model.labels) == ym.N_CLASSES
    assert model.labels[0] == "Speech" and not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(("samples", "padded"), [(1, 15600), (8000, 15600), (15600, 15600), (15601, 23280), (23280, 23280)])
def test_padding_gives_whole_patches(samples: int, padded: int) -> None:
    y = np.full(samples, 0.5, dtype=np.float32)
    out = ym.pad_waveform(y)
    assert out.shape == (padded,) and (out[:samples] == 0.5).all() and not out[samples:].any()
    frames = ym.yamnet_log_mel(y).shape[0]
    assert frames == 1 + (padded - ym.WINDOW) // ym.HOP and (frames - ym.PATCH_FRAMES) % ym.PATCH_HOP == 0
    assert ym.yamnet_patches(ym.yamnet_log_mel(y)).shape == (1 + (frames - 96) // 48, 96, 64)


def test_patches_cut_48_frames_apart() -> None:
    x = np.arange(200 * 64, dtype=np.float32).reshape(200, 64)
    p = ym.yamnet_patches(x)
    assert p.shape == (3, 96, 64) and p.flags.writeable
    np.testing.assert_array_equal(p[2], x[96:192])
    with pytest.raises(ParameterError, match="yamnet_patches"):
        ym.yamnet_patches(x[:95])
    with pytest.raises(ParameterError, match="yamnet_log_mel"):
        ym.yamnet_log_mel(np.zeros((2, 100), dtype=np.float32))


def test_mel_matrix_is_htk_125_to_7500_hz() -> None:
    w = ym.mel_matrix()
    assert w.shape == (257, 64) and not w[0].any() and w.min() >= 0
    hz = np.arange(257) * 8000 / 256
    used = hz[w.sum(axis=1) > 0]
    assert used.min() > 125 and used.max() < 7500
    # band 0's peak lies at the first HTK mel step above 125 Hz
    mel = lambda f: 1127 * np.log1p(f / 700)  # noqa: E731
    centre_mel = mel(125) + (mel(7500) - mel(125)) / 65
    assert abs(mel(hz[w[:, 0].argmax()]) - centre_mel) < mel(hz[w[:, 0].argmax()] + 31.25) - mel(hz[w[:, 0].argmax()])


def test_tf_same_padding_is_asymmetric_for_stride_2() -> None:
    pad = lambda h, w, s: ym._same_pad(torch.ones(1, 1, h, w), s)  # noqa: E731
    even = pad(6, 4, 2)  # total 1: nothing before, one after
    assert even.shape[2:] == (7, 5) and even[0, 0, 0, 0] == 1 and not even[0, 0, -1].any()
    assert pad(5, 5, 2).shape[2:] == (7, 7) and pad(5, 5, 2)[0, 0, 0, 0] == 0  # odd: one each side
    assert pad(6, 4, 1).shape[2:] == (8, 6)  # stride 1: one each side


def test_untrained_shapes_and_param_count() -> None:
    net = ym.YamnetBackbone().eval()
    assert sum(p.numel() for p in net.parameters()) == 3_740_425  # 3.7 M, the published size
    with torch.no_grad():
        out = net(torch.zeros(2, 96, 64))
        one = net(torch.zeros(96, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"embeddings": (2, 1024), "logits": (2, 521), "scores": (2, 521)}
    assert one["scores"].shape == (1, 521)
    with pytest.raises(ParameterError, match="YamnetBackbone"):
        net(torch.zeros(1, 100, 64))


def test_mid_embedding_is_the_tapped_maps_of_the_full_network(model: ym.YamnetBackbone) -> None:
    """The mid-level embedding (yamnet-mid) is, for each tapped layer of a full forward pass, the
    mean then the max of its map over time and mel (hooks on the whole network, not the slice)."""
    import torch

    from cultural_music.config import EMBEDDING_DIMS, YAMNET_MID_EMBEDDING

    patches = torch.from_numpy(np.random.default_rng(3).standard_normal((3, ym.PATCH_FRAMES, ym.N_MELS)).astype(np.float32))
    seen: dict[int, torch.Tensor] = {}
    hooks = [model.layers[i].register_forward_hook(lambda _m, _i, out, i=i: seen.__setitem__(i, out)) for i in ym.MID_TAPS]
    try:
        with torch.inference_mode():
            model.embedding(patches)
            mid = model.mid_embedding(patches)
    finally:
        for h in hooks:
            h.remove()
    want = torch.cat([t for i in ym.MID_TAPS for t in (seen[i].mean(dim=(2, 3)), seen[i].amax(dim=(2, 3)))], dim=1)
    assert mid.shape == (3, ym.MID_EMBEDDING_DIM) == (3, EMBEDDING_DIMS[YAMNET_MID_EMBEDDING])
    torch.testing.assert_close(mid, want, rtol=1e-5, atol=1e-6)
    assert [model.layers[i].conv.out_channels for i in ym.MID_TAPS] == [256, 512]
    clips = np.random.default_rng(4).standard_normal((2, 24000)).astype(np.float32) * 0.1
    full, mids = ym.embed_waveforms(clips, model), ym.embed_waveforms(clips, model, mid=True)
    assert mids.shape == (2, ym.MID_EMBEDDING_DIM, full.shape[-1])
