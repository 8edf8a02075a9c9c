"""Augmented variants reach the convex head's fit (issue 17, item 5), on the training side only:
extra rows of their recording's group in every inner fold that fits that group, never held out,
never scored, never calibrating; a validation recording's variants never fitted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cultural_music.config import Config
from cultural_music.data.dataset import Recording
from cultural_music.features.extract import ExtractResult, FeatureEntry
from cultural_music.models import build_model, default_config
from cultural_music.training import head_fit, head_search
from cultural_music.training.clip_dataset import ClipItem, VariantDataset
from cultural_music.training.convex_head import convex_parts, fit_logreg, pooled_features
from cultural_music.training.head_fit import fit_convex_head
from cultural_music.training.head_search import ExtraRows, choose_head, group_folds

def _blobs(rng: np.random.Generator, n_per: list[int], d: int = 8):
    centres = rng.normal(size=(len(n_per), d)) * 2
    z = np.concatenate([c + rng.normal(size=(n, d)) for c, n in zip(centres, n_per)])
    y = np.concatenate([np.full(n, i) for i, n in enumerate(n_per)])
    groups = np.array([f"{c}-{i // 3}" for c, n in enumerate(n_per) for i in range(n)])
    return z, y, groups


def test_inner_folds_fit_the_variants_of_their_own_groups_only(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    z, y, groups = _blobs(rng, [18, 15, 12])
    # two variants per clip, same label and group as their clip, dimension 0 marks them
    src = np.repeat(np.arange(len(y)), 2)
    ez = z[src] + 0.1 * rng.normal(size=(len(src), z.shape[1]))
    extra = ExtraRows(ez, y[src], groups[src])
    which = {row.tobytes(): j for j, row in enumerate(ez)}  # a variant row -> its index
    fitted: list[set[int]] = []
    real = head_search.fit_logreg

    def spy(zf, yf, *args, **kwargs):
        fitted.append({which[row.tobytes()] for row in zf if row.tobytes() in which})
        return real(zf, yf, *args, **kwargs)

    monkeypatch.setattr(head_search, "fit_logreg", spy)
    scored: list[int] = []

    def score(oof: np.ndarray) -> float:
        scored.append(len(oof))
        return float((oof.argmax(1) == y).mean())

    c_values = (0.1, 1.0)
    choice = choose_head(z, y, groups, 3, eps=1e-5, seed=0, score=score, default=(0.1, "none"), extra=extra,
                         C_values=c_values, weightings=("none", "balanced"))
    folds = group_folds(y, groups, seed=0)
    per_fold = len(c_values)
    assert len(fitted) == 2 * len(folds) * per_fold  # two weightings x folds x the C path
    for call, rows in enumerate(fitted):
        fit_idx, held = folds[(call // per_fold) % len(folds)]
        expected = {j for j in range(len(src)) if groups[src[j]] in set(groups[fit_idx])}
        assert rows == expected and expected  # the fitted groups' variants: all of them, and only them
        assert not {groups[src[j]] for j in rows} & set(groups[held])
    # only the clips are held out and scored: the variants answer for nothing
    assert set(scored) == {len(y)} and choice.oof_logits.shape == (len(y), 3)


def _entry_files(tmp: Path, rel: str, n_clips: int, n_var: int, shift: float, rng: np.random.Generator) -> FeatureEntry:
    """Clean ``(n_clips, 1506, 2)`` and variants ``(n_var, n_clips, 1506, 2)``, written as .npy."""
    stem = rel.replace("/", "_")
    clean = (rng.normal(size=(n_clips, 1506, 2)) + shift).astype(np.float32)
    np.save(tmp / f"{stem}.npy", clean)
    aug = None
    if n_var:
        np.save(tmp / f"{stem}.aug.npy", (clean[None] + 0.5 * rng.normal(size=(n_var, n_clips, 1506, 2))).astype(np.float32))
        aug = tmp / f"{stem}.aug.npy"
    return FeatureEntry(rel, f"{abs(hash(rel)):064x}"[:64], n_clips, 5.0 * n_clips, tmp / f"{stem}.npy", aug, n_var)


def _data(tmp: Path, *, n_var: int, val_variants: bool):
    """12 recordings per class of 2 classes, each its own group; 3 per class in val."""
    rng = np.random.default_rng(1)
    recs, extracted = [], ExtractResult()
    for c, label in enumerate(("a", "b")):
        for i in range(12):
            rel = f"{label}/{i}.wav"
            split = "val" if i < 3 else "train"
            nv = n_var if (split == "train" or val_variants) else 0
            extracted.entries[rel] = _entry_files(tmp, rel, 2, nv, 0.3 * c, rng)
            recs.append(Recording(Path("/x") / rel, rel, label, f"g-{rel}", split))
    return recs, extracted


def _cfg(tune: tuple[str, ...]) -> Config:
    return default_config("musicnn", Config()).replace(train={"tune": tune, "logreg_c": 0.1, "class_weighting": "none"})


def _items(recs, extracted, splits) -> list[ClipItem]:
    out = []
    for r in recs:
        e = extracted.entries[r.rel_path]
        if r.split in splits:
            out += [ClipItem(e.clean_path, k, "ab".index(r.label), r.rel_path, e.aug_path, e.n_variants) for k in range(e.n_clips)]
    return out


def test_variant_dataset_reads_every_stored_variant_of_each_clip(tmp_path: Path) -> None:
    recs, extracted = _data(tmp_path, n_var=2, val_variants=False)
    items = _items(recs, extracted, ("train", "val"))
    var = VariantDataset(items)
    assert len(var) == 2 * 2 * 18  # 18 training recordings x 2 clips x 2 variants; val has none
    e = extracted.entries[var.items[5].rel_path]
    stored = np.load(e.aug_path)
    np.testing.assert_array_equal(var[5][0][0].numpy(), stored[var.variants[5] - 1, var.items[5].clip])


@pytest.mark.parametrize("tune", [(), ("logreg_c",)])
def test_the_final_fit_has_the_training_variants_and_nothing_held_out(tmp_path: Path, tune: tuple[str, ...],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The fitted head is exactly logistic regression on the training side's clips plus their
    variants: it fails if the variants are ignored, or if a validation file's variants are
    fitted where validation is held out (``tune=()``)."""
    monkeypatch.setattr(head_fit, "C_GRID", (0.01, 1.0))  # a short search: the test is about the rows
    recs, extracted = _data(tmp_path, n_var=2, val_variants=True)
    torch.manual_seed(0)
    model = build_model("musicnn", n_classes=2, n_rows=1506)
    cfg = _cfg(tune)
    cf = fit_convex_head(model, recs, extracted, ["a", "b"], cfg, log=lambda m: None)
    side = ("train", "val") if tune else ("train",)
    items = _items(recs, extracted, side)
    clean = pooled_features(model, _clean_ds(items))
    var = VariantDataset(items)
    zv = pooled_features(model, var)
    eps = convex_parts(model).eps
    ref = fit_logreg(np.concatenate([clean, zv]), np.concatenate([_labels(items), var.labels]), 2,
                     C=cf.cfg.train.logreg_c, class_weighting=cf.cfg.train.class_weighting, eps=eps)
    parts = convex_parts(model)
    np.testing.assert_allclose(parts.linear.weight.detach().double().numpy(), ref.coef, rtol=1e-4, atol=1e-6)
    assert cf.n_fit_clips == len(items) + len(var) and len(var) == len(items) * 2
    n_held = 2 * 24 if tune else 2 * 6  # out-of-fold answers of every side clip, or the val clips: clean ones only
    assert len(cf.held_labels) == n_held and cf.held_logits.shape == (n_held, 2)


def _clean_ds(items: list[ClipItem]):
    from cultural_music.training.clip_dataset import ClipDataset

    return ClipDataset(items)


def _labels(items: list[ClipItem]) -> np.ndarray:
    return np.array([it.label for it in items])


def test_a_tuned_heads_validation_files_get_variants_too(tmp_path: Path) -> None:
    """With ``train.tune`` the training side is train + val, so both get cached variants; the test
    split never does (and without ``tune`` only the train split does)."""
    from conftest import make_tone_dataset

    from cultural_music.features.cache import FeatureCache
    from cultural_music.features.jobs import LocalRunner
    from cultural_music.training import pipeline

    data = make_tone_dataset(tmp_path / "d", per_class=4, seconds=1.0)
    base = default_config("seed-cnn").replace(audio={"sample_rate": 8000, "clip_seconds": 1.0}, features={"n_mels": 32},
                                              augment={"n_variants": 1, "pitch_shift_p": 0.0, "time_stretch_p": 0.0})
    for tune, sides in (((), {"train"}), (("logreg_c",), {"train", "val"})):
        prepared = pipeline.prepare(data, base.replace(train={"tune": tune}), cache=FeatureCache(tmp_path / "c"),
                                    runner=LocalRunner(1), progress=False, log=lambda s: None)
        recs, feats, _ = prepared.split()
        with_var = {r.split for r in recs if feats.entries[r.rel_path].n_variants == 1}
        assert with_var == sides and {r.split for r in recs} == {"train", "val", "test"}
