"""report.html: every section, images embedded (no network), text escaped, worst errors listed."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cultural_music.evaluation.evaluate import calibration_metrics, prediction_rows
from cultural_music.metrics.classification import classification_metrics, softmax
from cultural_music.evaluation.report import SECTIONS, render_report, write_report

CLASSES = ["a<b>", "calm", "loud"]
IMAGE_KEYS = ("accuracy", "loss", "confusion", "confusion_normalized", "roc", "pr", "reliability")


def _inputs(rng: np.random.Generator) -> tuple[dict, dict, list[dict]]:
    logits = 3 * rng.normal(size=(12, 3))
    y = np.array([0, 1, 2] * 4)
    proba = softmax(logits, 1.5)
    rec_p = proba.reshape(6, 2, 3).mean(1)
    rec_y = y[::2]
    res = {"clip_logits": logits, "clip_true": y, "clip_proba": proba, "clip_proba_raw": softmax(logits), "temperature": 1.5,
           "rec_true": rec_y, "rec_proba": rec_p, "rec_proba_raw": softmax(logits).reshape(6, 2, 3).mean(1)}
    rows = prediction_rows([f"{CLASSES[c]}/f{i}.wav" for i, c in enumerate(rec_y)], rec_y, rec_p, CLASSES)
    rec = classification_metrics(rec_y, rec_p, CLASSES)
    metrics = {"n": 6, "n_clips": 12, "data": "test split", "classes": CLASSES, "recording": rec,
               "clip": classification_metrics(y, proba, CLASSES), "calibration": calibration_metrics(res),
               "predictions_csv": "test_predictions.csv", "skipped": [{"path": "calm/bad.wav", "reason": "empty file (0 bytes)"}]}
    meta = {"model": {"name": "seed-cnn"}, "classes": CLASSES, "calibration": {"temperature": 1.5},
            "training": {"best_epoch": 7, "epochs_run": 13},
            "config": {"audio": {"sample_rate": 22050, "clip_seconds": 30.0}, "train": {"epochs": 50, "learning_rate": 0.0001}},
            "data": {"data_dir": "/data/music", "per_class": {
                c: {"train": {"files": 8, "minutes": 4.0, "clips": 8}, "val": {"files": 2, "minutes": 1.0, "clips": 2},
                    "test": {"files": 2, "minutes": 1.5, "clips": 3}} for c in CLASSES}}}
    return metrics, meta, rows


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for i, key in enumerate(IMAGE_KEYS):
        out[key] = tmp_path / f"{key}.png"
        Image.new("RGB", (8, 6), (i * 30, 100, 200)).save(out[key])
    return out


def test_report_has_every_section_in_order_and_embeds_images(rng: np.random.Generator, images: dict[str, Path], tmp_path: Path) -> None:
    metrics, meta, rows = _inputs(rng)
    path = write_report(tmp_path / "report.html", metrics=metrics, meta=meta, predictions=rows, images=images, model_dir=tmp_path / "m1")
    text = path.read_text(encoding="utf-8")
    positions = [text.index(f'<section id="{key}">') for key, _ in SECTIONS]
    assert positions == sorted(positions)
    for _, title in SECTIONS:
        assert f"<h2>{title}</h2>" in text
    assert "<title>Evaluation report: m1: seed-cnn</title>" in text
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(embedded) == len(IMAGE_KEYS)
    assert {base64.b64decode(e) for e in embedded} == {p.read_bytes() for p in images.values()}
    # self-contained: nothing fetched from elsewhere
    assert not re.search(r'(src|href)="(https?:)?//', text) and "<script" not in text and "@import" not in text
    assert "<link" not in text


def test_report_content(rng: np.random.Generator, images: dict[str, Path]) -> None:
    metrics, meta, rows = _inputs(rng)
    text = render_report(metrics=metrics, meta=meta, predictions=rows, images=images, worst=2)
    assert "a&lt;b&gt;" in text and "<b>" not in text.replace("<b>T = ", "")  # class names escaped
    assert f"{metrics['recording']['macro_f1']:.3f}" in text and f"{metrics['clip']['macro_f1']:.3f}" in text
    assert f"{metrics['recording']['baseline_accuracy']:.3f}" in text and "balanced accuracy" in text
    wrong = [r for r in rows if not r["correct"]]
    assert len(wrong) >= 3
    listed = re.findall(r'<span class="mono">([^<]+\.wav)</span>', text.split('id="errors"')[1].split("</section>")[0])
    assert listed == [r["path"].replace("<", "&lt;").replace(">", "&gt;") for r in wrong[:2]]
    assert f"{len(wrong)} of 6 recordings wrong" in text
    assert "train (files / min / clips)" in text and "24 / 12.0 / 24" in text  # totals row of the data summary
    assert "learning_rate" in text and "0.0001" in text and "calm/bad.wav" in text and "empty file (0 bytes)" in text
    assert "T = 1.500" in text


def test_missing_image_gets_a_placeholder(rng: np.random.Generator, images: dict[str, Path]) -> None:
    metrics, meta, rows = _inputs(rng)
    del images["roc"]
    text = render_report(metrics=metrics, meta=meta, predictions=rows, images=images)
    assert text.count("data:image/png;base64,") == len(IMAGE_KEYS) - 1
    assert "ROC per class: plot not made in this run" in text


@pytest.mark.browser
def test_report_renders_offline_in_chromium(rng: np.random.Generator, images: dict[str, Path], tmp_path: Path) -> None:
    """Headless Chromium: every image decodes, nothing is requested from a network, no sideways scroll."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip(f"{chromium} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    metrics, meta, rows = _inputs(rng)
    path = write_report(tmp_path / "report.html", metrics=metrics, meta=meta, predictions=rows, images=images)
    requested: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--headless", "--no-sandbox", "--disable-gpu",
                                                                         "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requested.append(r.url))
            page.goto(path.resolve().as_uri())
            decoded = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            headings = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.innerText)")
        finally:
            browser.close()
    assert decoded == [True] * len(IMAGE_KEYS)
    assert [u for u in requested if not u.startswith(("file:", "data:"))] == []
    assert overflow <= 0
    assert headings == [title for _, title in SECTIONS]
