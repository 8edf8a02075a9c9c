"""Web API: upload checks, limits, sniffing, concurrency, the page's assets (FastAPI TestClient)."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import re
import shutil
import socket
import stat
import tempfile
import threading
import time
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
from cultural_music.serve.upload import UploadSpace, receive_upload, timed_chunks  # noqa: E402
from cultural_music.inference.classifier import Classifier

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
    assert info["limits"] == {"max_upload_mb": 1.0, "max_duration_s": 20.0, "max_samples": 172_800_000,
                              "max_sample_rate": 192_000, "formats": ["flac", "mp3", "ogg", "wav"]}
    assert info["label_noun"] == "class"  # model.json of the tiny model has no word of its own


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


# ---- cost of one upload, and slow clients ------------------------------------------------------

@pytest.fixture()
def predicted(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Durations (s) of the files the model was asked to decode, on any model thread."""
    calls: list[float] = []
    original = Classifier.predict

    def spy(self, path, *args, **kwargs):
        calls.append(sf.info(str(path)).duration)
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(Classifier, "predict", spy)
    return calls


def test_header_limits_refuse_before_decoding(model_dir: Path, tmp_path: Path, predicted: list[float]) -> None:
    app = create_app(model_dir, max_samples=100_000, max_sample_rate=96_000, upload_dir=tmp_path, warm_up=False)
    eight = tone(FREQ["low"], 0.5, 48_000)[:, None].repeat(8, axis=1)  # 0.5 s x 8 channels x 48 kHz = 192,000 samples
    with TestClient(app) as c:
        r = post(c, "eight.wav", audio_bytes(eight, sr=48_000))
        assert r.status_code == 413, r.text
        assert r.json()["detail"] == ("eight.wav: 0.2 million samples to decode (0.5 s x 8 channels at 48000 Hz); "
                                      "this server decodes up to 0.1 million per recording")
        r = post(c, "fast.flac", audio_bytes(tone(FREQ["low"], 0.2, 384_000), "FLAC", sr=384_000))
        assert r.status_code == 422
        assert r.json()["detail"] == "fast.flac: sample rate 384000 Hz is above the 96000 Hz this server decodes"
        assert predicted == []  # refused from the header: nothing was decoded
        assert post(c, "ok.wav", tone_bytes("low")).status_code == 200 and predicted == [pytest.approx(1.2)]
    assert list(tmp_path.iterdir()) == []


def test_long_upload_does_not_delay_a_short_one(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started, gate = threading.Event(), threading.Event()
    original = Classifier.predict

    def slow_when_long(self, path, *args, **kwargs):
        if sf.info(str(path)).duration > 2.0:
            started.set()
            gate.wait(timeout=8)  # a long recording that keeps its model thread busy
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(Classifier, "predict", slow_when_long)
    app = create_app(model_dir, long_after_s=2.0, upload_dir=tmp_path, warm_up=False)
    try:
        with TestClient(app) as c, ThreadPoolExecutor(1) as pool:
            long_job = pool.submit(post, c, "long.wav", tone_bytes("mid", seconds=3.0))
            assert started.wait(timeout=20)
            short = post(c, "short.wav", tone_bytes("high"))
            long_still_running = not long_job.done()
            gate.set()
            assert short.status_code == 200 and short.json()["label"] == "high"
            assert long_still_running  # answered while the long one was still being processed
            assert long_job.result(timeout=30).json()["label"] == "mid"
    finally:
        gate.set()


def test_stalled_body_is_408(tmp_path: Path) -> None:
    async def stalls():
        yield b'--xx\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF'
        await asyncio.sleep(30)
        yield b"never"

    headers = {"content-type": "multipart/form-data; boundary=xx"}
    t0 = time.perf_counter()
    with pytest.raises(RequestError) as err:
        asyncio.run(receive_upload(headers, timed_chunks(stalls(), idle_s=0.2, total_s=60), tmp_path, max_bytes=10**6))
    assert err.value.status == 408 and err.value.message == "the upload stalled (no data for 0.2 s); send it again"
    assert time.perf_counter() - t0 < 5


def test_uploads_in_flight_share_a_disk_budget(model_dir: Path, tmp_path: Path) -> None:
    space = UploadSpace(max_bytes=1000, parent=tmp_path)
    a, b = space.new_folder(), space.new_folder()
    space.reserver(a)(600)
    with pytest.raises(RequestError) as err:
        space.reserver(b)(600)
    assert err.value.status == 507 and "space for uploads in progress is full" in err.value.message
    space.remove(a)
    space.reserver(b)(600)  # room again once the other upload is gone
    space.remove(b)
    assert space.used == 0 and list(tmp_path.iterdir()) == []
    app = create_app(model_dir, max_temp_mb=0.05, upload_dir=tmp_path, warm_up=False)
    with TestClient(app) as c:
        r = post(c, "big.wav", tone_bytes("low", seconds=5.0))  # 80 KB > 50 KB
    assert r.status_code == 507 and r.headers["connection"] == "close"
    assert r.json()["detail"] == "the server's space for uploads in progress is full (51 KB); try again in a minute"
    assert list(tmp_path.iterdir()) == []


def test_failed_cleanup_is_retried(client: TestClient, uploads: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_rmtree = shutil.rmtree
    failures = [1]

    def flaky_rmtree(path, ignore_errors=False, **kw):
        if failures and "cultural-music-upload-" in str(path):
            failures.pop()
            return None  # as rmtree(ignore_errors=True) does when no file handle is left
        return real_rmtree(path, ignore_errors=ignore_errors, **kw)

    monkeypatch.setattr(shutil, "rmtree", flaky_rmtree)
    assert post(client, "a.wav", tone_bytes("low")).status_code == 200
    assert len(list(uploads.iterdir())) == 1  # deletion failed once ...
    assert post(client, "b.wav", tone_bytes("low")).status_code == 200
    assert_no_uploads_left(uploads)  # ... and was retried


def test_no_file_handles_is_a_clear_503(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_handles(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(tempfile, "mkdtemp", no_handles)
    r = post(client, "a.wav", tone_bytes("low"))
    assert r.status_code == 503
    assert r.json()["detail"] == "the server cannot store the upload now (Too many open files); try again in a minute"


def _read_until_closed(sock: socket.socket, limit_s: float) -> bytes:
    sock.settimeout(limit_s)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except OSError:  # still open after limit_s (socket.timeout), or reset: the test checks the time
        pass
    return data


def test_stalled_connections_are_closed_and_others_answered(model_dir: Path, tmp_path: Path) -> None:
    """30 local sockets stall (15 in the headers, 15 in the body); a normal upload is answered
    meanwhile, the stalled ones are closed within their timeouts; past the cap, 503 at once."""
    import httpx

    from cultural_music.serve.server import make_server

    app = create_app(model_dir, body_timeout_s=1.0, upload_dir=tmp_path, warm_up=False)
    server = make_server(app, host="127.0.0.1", port=0, head_timeout_s=1.0, keep_alive_s=1.0, max_connections=40,
                         log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    socks: list[socket.socket] = []
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        body_head = ('--xx\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF').encode()
        for i in range(30):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(s)
            if i % 2:
                s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
            else:
                s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
                          b"boundary=xx\r\nContent-Length: 100000\r\n\r\n" + body_head)
        t0 = time.perf_counter()
        r = httpx.post(f"http://127.0.0.1:{port}/api/predict", files={"file": ("ok.wav", tone_bytes("low"), "audio/wav")},
                       timeout=20)
        assert r.status_code == 200 and r.json()["label"] == "low"
        answers = [_read_until_closed(s, limit_s=max(0.1, 6 - (time.perf_counter() - t0))) for s in socks]
        assert time.perf_counter() - t0 < 6.5
        assert all(a == b"" for a in answers[1::2])  # closed without a word: no request head
        assert all(a.startswith(b"HTTP/1.1 408 ") and b"the upload stalled" in a for a in answers[0::2])
        for s in socks:
            s.close()
        socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(45)]
        time.sleep(0.3)
        busy = [a for a in (_read_until_closed(s, 0.2) for s in socks) if a]
        assert len(busy) >= 5 and all(a.startswith(b"HTTP/1.1 503 ") and b"too many open connections" in a for a in busy)
    finally:
        for s in socks:
            s.close()
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert list(tmp_path.iterdir()) == []


# ---- wording ---------------------------------------------------------------------------------

def test_wording_is_the_models_own_or_neutral(client: TestClient, model_dir: Path, tmp_path: Path) -> None:
    for url in ("/", "/static/app.js", "/openapi.json"):
        assert "kind of music" not in client.get(url).text.lower(), url
    js = client.get("/static/app.js").text
    assert "label_noun" in js
    birds = tmp_path / "birds"
    shutil.copytree(model_dir, birds)
    meta = json.loads((birds / "model.json").read_text())
    (birds / "model.json").write_text(json.dumps({**meta, "label_noun": "bird species"}))
    with TestClient(create_app(birds, upload_dir=tmp_path, warm_up=False)) as c:
        assert c.get("/api/model").json()["label_noun"] == "bird species"


# ---- command line ---------------------------------------------------------------------------

def test_cli_serve_fails_clearly_without_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cultural_music.cli import main

    assert main(["serve", str(tmp_path / "nope")]) == 1
    assert "model folder does not exist" in capsys.readouterr().err
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--max-upload-mb" in out and "--max-samples" in out and "--head-timeout" in out and "--max-connections" in out
