"""Speed settings of the frozen backbones give the embeddings of the plain network."""

from __future__ import annotations

import torch

from cultural_music.backbones import yamnet as ym


def test_pretrained_yamnet_channels_last_equals_default_layout() -> None:
    fast, plain = ym.pretrained_yamnet(), ym.load_yamnet()
    # (out, in, kh, kw) weights of one input channel: only the strides tell the layouts apart
    assert fast.layers[0].conv.weight.stride() == (9, 1, 3, 1) != plain.layers[0].conv.weight.stride()
    x = torch.randn(5, ym.PATCH_FRAMES, ym.N_MELS, generator=torch.Generator().manual_seed(0)) - 3.0
    with torch.inference_mode():
        want, got = plain.embedding(x), fast.embedding(x)
    assert got.shape == (5, ym.EMBEDDING_DIM)
    assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max())
