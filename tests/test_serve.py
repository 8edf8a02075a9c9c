"""Web API: upload checks, limits, sniffing, concurrency, the page's assets (FastAPI TestClient)."""

from __future__ import annotations

import asyncio
import io
import re
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the web extra (fastapi, uvicorn, python-multipart) is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from cultural_music.serve import create_app  # noqa: E402
from cultural_music.serve.errors import RequestError  # noqa: E402
from cultural_music.serve.runner import ModelRunner  # noqa: E402
from cultural_music.serve.sniff import describe_content, sniff_audio  # noqa: E402
from cultural_music.serve.upload import receive_upload  # noqa: E402

from conftest import tone  # noqa: E402
from tiny_model import sine, train_tiny_model  # noqa: E402

FREQ = {"low": 300.0, "mid": 900.0, "high": 2400.0}


def audio_bytes(y: np.ndarray, fmt: str = "WAV", sr: int = 8000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt)
    return buf.getvalue()


def tone_bytes(label: str, seconds: float = 1.2, fmt: str = "WAV", seed: int = 5) -> bytes:
    return audio_bytes(tone(FREQ[label], seconds, 8000, rng=np.random.default_rng(seed)), fmt)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("serve") / "model", {k: sine(f) for k, f in FREQ.items()})


@pytest.fixture(scope="module")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def client(model_dir: Path, uploads: Path) -> Iterator[TestClient]:
    app = create_app(model_dir, max_upload_mb=1.0, max_duration_s=20.0, upload_dir=uploads)
    with TestClient(app) as c:
        yield c


def post(client: TestClient, name: str, data: bytes, ctype: str = "audio/wav"):
    return client.post("/api/predict", files={"file": (name, data, ctype)})


def assert_no_uploads_left(uploads: Path) -> None:
    assert list(uploads.iterdir()) == []


# ---- page and description -------------------------------------------------------------------

def test_page_and_assets_reference_no_other_host(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert {"/static/app.js", "/static/style.css"} <= set(assets)
    texts = [page.text]
    for url in assets:
        r = client.get(url)
        assert r.status_code == 200, url
        if url.endswith((".js", ".css")):
            texts.append(r.text)
    for text in texts:
        assert re.findall(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text) == []
    js = client.get("/static/app.js").text
    assert "/api/predict" in js and "XMLHttpRequest" in js and "upload.onprogress" in js


def test_model_description(client: TestClient) -> None:
    info = client.get("/api/model").json()
    assert info["classes"] == ["high", "low", "mid"]
    assert info["name"] == "seed-cnn" and info["version"]
    assert info["limits"] == {"max_upload_mb": 1.0, "max_duration_s": 20.0, "formats": ["flac", "mp3", "ogg", "wav"]}


def test_docs_are_served_locally(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["properties"]["file"]["format"] == "binary"
    assert {"413", "415", "422"} <= set(schema["paths"]["/api/predict"]["post"]["responses"])
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "https://" not in docs.text and "http://" not in docs.text
    for url in re.findall(r'(?:src|href)="(/static/swagger-ui/[^"]+)"', docs.text):
        assert client.get(url).status_code == 200, url


# ---- predictions ----------------------------------------------------------------------------

def test_predict_good_wav(client: TestClient, uploads: Path) -> None:
    r = post(client, "query one.wav", tone_bytes("high"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["label"] == "high" and out["filename"] == "query one.wav" and out["format"] == "wav"
    assert set(out["probabilities"]) == {"high", "low", "mid"}
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert out["confidence"] == pytest.approx(max(out["probabilities"].values()))
    assert out["duration"] == pytest.approx(1.2, abs=0.01)
    assert out["model"]["name"] == "seed-cnn"
    assert str(uploads) not in r.text and "upload.wav" not in r.text  # the server's temp path never leaks
    assert_no_uploads_left(uploads)


def test_format_is_told_by_content_not_name(client: TestClient) -> None:
    r = post(client, "actually-flac.wav", tone_bytes("low", fmt="FLAC"))
    assert r.status_code == 200 and r.json()["format"] == "flac" and r.json()["label"] == "low"
    r = post(client, "no-extension", tone_bytes("mid", fmt="OGG"), "application/octet-stream")
    assert r.status_code == 200 and r.json()["format"] == "ogg" and r.json()["label"] == "mid"


def test_long_file_gets_a_timeline(client: TestClient) -> None:
    y = np.concatenate([tone(FREQ[k], 3.0, 8000, rng=np.random.default_rng(i)) for i, k in enumerate(("low", "high", "mid"))])
    r = post(client, "long.wav", audio_bytes(y))
    assert r.status_code == 200
    timeline = r.json()["timeline"]
    assert [s["label"] for s in timeline] == ["low", "high", "mid"]
    assert timeline[0]["start"] == 0.0 and timeline[-1]["end"] == pytest.approx(9.0, abs=0.01)
    assert [s["end"] for s in timeline[:2]] == [pytest.approx(3.0, abs=0.75), pytest.approx(6.0, abs=0.75)]
    assert all(0 <= s["confidence"] <= 1 for s in timeline)


# ---- bad input ------------------------------------------------------------------------------

def test_corrupt_wav_is_422_with_the_file_name(client: TestClient, uploads: Path) -> None:
    garbage = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    r = post(client, "broken.wav", b"RIFF\xa4\x0f\x00\x00WAVE" + garbage)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("broken.wav: ") and "corrupt" in r.json()["detail"]
    assert_no_uploads_left(uploads)


def test_text_renamed_to_wav_is_415(client: TestClient, uploads: Path) -> None:
    r = post(client, "notes.wav", b"These are my field notes, not a recording.\n" * 20)
    assert r.status_code == 415
    assert r.json()["detail"] == ("notes.wav: not a recording this server reads (WAV, FLAC, OGG or MP3); "
                                  "its content looks like plain text")
    assert_no_uploads_left(uploads)


def test_silent_and_empty_files(client: TestClient) -> None:
    r = post(client, "silence.wav", audio_bytes(np.zeros(8000, dtype=np.float32)))
    assert r.status_code == 422 and r.json()["detail"] == "silence.wav: silent: every sample is zero"
    r = post(client, "empty.wav", b"")
    assert r.status_code == 400 and r.json()["detail"] == "empty.wav: empty file (0 bytes)"


def test_form_without_a_file_is_400(client: TestClient) -> None:
    r = client.post("/api/predict", files={"other": ("a.wav", tone_bytes("low"), "audio/wav")})
    assert r.status_code == 400 and "field named 'file'" in r.json()["detail"]
    r = client.post("/api/predict", content=tone_bytes("low"), headers={"content-type": "audio/wav"})
    assert r.status_code == 400 and "multipart/form-data" in r.json()["detail"]


def test_oversize_upload_is_413(client: TestClient, uploads: Path) -> None:
    big = audio_bytes(np.full(8000 * 70, 0.1, dtype=np.float32))  # ~2.1 MB of 16-bit PCM > 1 MB
    r = post(client, "big.wav", big)
    assert r.status_code == 413 and "larger than the 1 MB this server accepts" in r.json()["detail"]
    # without a Content-Length header the limit is enforced while the body is parsed
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + big + f"\r\n--{boundary}--\r\n".encode()
    r = client.post("/api/predict", content=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413 and r.json()["detail"] == "big.wav: larger than the 1 MB this server accepts"
    assert_no_uploads_left(uploads)


def test_too_long_recording_is_413(model_dir: Path, tmp_path: Path) -> None:
    app = create_app(model_dir, max_duration_s=2.0, upload_dir=tmp_path, warm_up=False)
    with TestClient(app) as c:
        r = post(c, "three.wav", tone_bytes("low", seconds=3.0))
    assert r.status_code == 413
    assert r.json()["detail"] == "three.wav: 3.0 s long; this server accepts recordings up to 2 s"
    assert list(tmp_path.iterdir()) == []


def test_upload_stops_reading_at_the_limit(tmp_path: Path) -> None:
    """receive_upload gives up on the first chunk past the limit, without reading the rest."""
    consumed = []

    async def chunks():
        yield b'--xx\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for i in range(100):
            consumed.append(i)
            yield b"\0" * 1000

    headers = {"content-type": "multipart/form-data; boundary=xx"}
    with pytest.raises(RequestError) as err:
        asyncio.run(receive_upload(headers, chunks(), tmp_path, max_bytes=5000))
    assert err.value.status == 413 and len(consumed) == 6


# ---- concurrency and temp files -------------------------------------------------------------

def test_eight_parallel_uploads_all_answered(client: TestClient, uploads: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = client.app.state.runner
    modes: list[int] = []
    original = runner.predict_file

    def spy(path: Path, **kw):
        modes.append(stat.S_IMODE(path.parent.stat().st_mode))
        return original(path, **kw)

    monkeypatch.setattr(runner, "predict_file", spy)
    labels = ["low", "mid", "high", "low", "mid", "high", "high", "low"]
    files = [tone_bytes(k, seed=i) for i, k in enumerate(labels)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: post(client, f"{labels[i]}-{i}.wav", files[i]), range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert [a.json()["label"] for a in answers] == labels
    assert [a.json()["filename"] for a in answers] == [f"{k}-{i}.wav" for i, k in enumerate(labels)]
    assert modes == [0o700] * 8
    assert_no_uploads_left(uploads)


def test_runner_refuses_work_past_max_pending() -> None:
    fake = SimpleNamespace(describe=lambda: {"name": "fake", "version": "1"})
    runner = ModelRunner(fake, max_pending=2)
    gate = threading.Event()
    try:
        jobs = [runner.submit(gate.wait), runner.submit(lambda: 7)]
        with pytest.raises(RequestError) as err:
            runner.submit(lambda: 8)
        assert err.value.status == 503 and "server busy: 2 recordings are waiting" in err.value.message
        gate.set()
        assert jobs[1].result(timeout=5) == 7
        assert runner.submit(lambda: 9).result(timeout=5) == 9  # room again once work is done
    finally:
        gate.set()
        runner.close()


# ---- sniffing -------------------------------------------------------------------------------

@pytest.mark.parametrize("head, fmt", [
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
    (b"RF64\xff\xff\xff\xffWAVEds64", "wav"),
    (b"fLaC\x00\x00\x00\x22", "flac"),
    (b"OggS\x00\x02" + b"\x00" * 20, "ogg"),
    (b"ID3\x04\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10 + b"\xff\xfb\x90\x44", "mp3"),
    (b"ID3\x03\x00\x00\x00\x00\x00\x04TIT2fLaC\x00\x00", "flac"),
    (b"\xff\xfb\x90\x44\x00\x00", "mp3"),  # MPEG-1 layer III frame header
    (b"\xff\xf1\x50\x80\x00\x1f", None),  # AAC in ADTS: layer bits 00, not MP3
    (b"\xff\xfb\xf0\x44", None),  # bitrate index 1111 is invalid
    (b"RIFF\x24\x00\x00\x00AVI LIST", None),
    (b"\x89PNG\r\n\x1a\n", None),
    (b"hello", None),
    (b"", None),
])
def test_sniff_audio(head: bytes, fmt: str | None) -> None:
    assert sniff_audio(head) == fmt


def test_sniff_real_encoder_output() -> None:
    y = tone(440, 0.5, 16000)
    for fmt, name in (("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg"), ("MP3", "mp3")):
        assert sniff_audio(audio_bytes(y, fmt, 16000)[:4096]) == name


@pytest.mark.parametrize("head, words", [
    (b"%PDF-1.7", "a PDF document"),
    (b"\x89PNG\r\n", "a PNG image"),
    (b"<!doctype html>", "an HTML or XML document"),
    (b"caf\xc3\xa9 notes", "plain text"),
    (b"\x00\x01\x02\xfe\xff\x80\x81\x82\x83\x84", "binary data of an unknown kind"),
])
def test_describe_content(head: bytes, words: str) -> None:
    assert describe_content(head) == words


# ---- command line ---------------------------------------------------------------------------

def test_cli_serve_fails_clearly_without_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cultural_music.cli import main

    assert main(["serve", str(tmp_path / "nope")]) == 1
    assert "model folder does not exist" in capsys.readouterr().err
    assert main(["serve", "--help"]) == 0
    assert "--max-upload-mb" in capsys.readouterr().out
