"""The page in a real browser: uvicorn on 127.0.0.1, Debian's headless Chromium driven by Playwright.

Skips (with the reason) only when /usr/bin/chromium or the playwright package is missing;
``scripts/setup.sh --with-browser`` installs both (``apt-get install chromium``; never
``playwright install``, which downloads a browser build).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
uvicorn = pytest.importorskip("uvicorn", reason="the web extra (uvicorn) is not installed")

from cultural_music.inference.classifier import Classifier
from cultural_music.serve import create_app  # noqa: E402

from conftest import tone, write  # noqa: E402
from tiny_model import sine, train_tiny_model  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sounds = {"low": sine(300.0), "mid": sine(900.0), "high": sine(2400.0)}
    return train_tiny_model(tmp_path_factory.mktemp("browser") / "model", sounds)


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(create_app(model_dir), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        pg.requests = []  # every URL the page asks for
        pg.on("request", lambda r: pg.requests.append(r.url))
        pg.goto(server + "/")
        sync_api.expect(pg.locator("#model-line")).to_contain_text("Model: seed-cnn", timeout=20_000)
        yield pg
        browser.close()


def test_upload_shows_the_models_label(page, server: str, model_dir: Path, tmp_path: Path) -> None:
    y = np.concatenate([tone(300, 3.0, 8000, rng=np.random.default_rng(1)), tone(2400, 2.0, 8000, rng=np.random.default_rng(2))])
    demo = write(tmp_path / "demo.wav", y)
    expected = Classifier.load(model_dir).predict(demo)
    page.set_input_files("#file", str(demo))
    sync_api.expect(page.locator("#result")).to_be_visible(timeout=60_000)
    assert page.text_content("#label") == expected.label
    shown = page.text_content("#confidence")
    assert shown.endswith("% confidence")
    assert float(shown.split("%")[0]) == pytest.approx(expected.confidence * 100, abs=0.051)
    assert page.locator("#bars li").count() == 3
    assert page.text_content("#file-name") == "demo.wav"
    if len(expected.timeline) > 1:
        assert page.locator("#timeline .segment").count() == len(expected.timeline)
    assert page.locator("#player").get_attribute("src").startswith("blob:")
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert all(u.startswith((server + "/", "blob:", "data:")) for u in page.requests), page.requests


def test_api_docs_render_offline(page, server: str) -> None:
    pytest.importorskip("swagger_ui_bundle", reason="swagger-ui-bundle is not installed (/docs shows a plain page)")
    page.goto(server + "/docs")
    sync_api.expect(page.get_by_text("/api/predict", exact=True)).to_be_visible(timeout=20_000)
    assert all(u.startswith((server + "/", "blob:", "data:")) for u in page.requests), page.requests
    page.goto(server + "/")
    sync_api.expect(page.locator("#model-line")).to_contain_text("Model: seed-cnn", timeout=20_000)


def test_non_audio_upload_shows_the_servers_message(page, tmp_path: Path) -> None:
    notes = tmp_path / "notes.wav"
    notes.write_text("field notes, not a recording\n" * 10)
    page.set_input_files("#file", str(notes))
    sync_api.expect(page.locator("#error")).to_be_visible(timeout=30_000)
    assert page.text_content("#error") == ("notes.wav: not a recording this server reads (WAV, FLAC, OGG or MP3); "
                                           "its content looks like plain text")
    assert page.locator("#result").is_hidden()
