"""The web app: a one-page UI at ``/`` and a small JSON API, all served from this machine.

``POST /api/predict`` takes a multipart upload (field ``file``) and answers its class;
``GET /api/model`` describes the model; ``/docs`` is the OpenAPI UI (served locally).  Uploads
go to a fresh private folder (mode 0700) per request that is always deleted afterwards.
FastAPI is imported inside :func:`create_app` only, so the package imports without it.
"""

# No "from __future__ import annotations": FastAPI reads the route functions' annotations, which
# name classes imported inside create_app.
import asyncio
import functools
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..audio import audio_info
from ..errors import AudioLoadError, check_positive
from .errors import RequestError
from .runner import ModelRunner
from .sniff import AUDIO_MEDIA_TYPES, describe_content, sniff_audio
from .upload import FIELD, DiskBudget, receive_upload

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["create_app", "STATIC_DIR", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_MAX_DURATION_S", "DEFAULT_MAX_SAMPLE_RATE",
           "DEFAULT_MAX_MSAMPLES", "DEFAULT_LONG_MSAMPLES"]

STATIC_DIR = Path(__file__).with_name("static")
DEFAULT_MAX_UPLOAD_MB = 100.0
DEFAULT_MAX_DURATION_S = 1800.0
DEFAULT_MAX_SAMPLE_RATE = 192_000
"""Highest native sample rate accepted, Hz (422 past it)."""
DEFAULT_MAX_MSAMPLES = 180.0
"""Most samples (frames x channels, in millions) one upload may make the server decode: 30 min of
48 kHz stereo is 173 million; 413 past it."""
DEFAULT_LONG_MSAMPLES = 6.0
"""Uploads with more samples (millions) than this go to the long lane (about a minute of 48 kHz stereo)."""
DEFAULT_READ_TIMEOUT_S = 30.0
"""Longest wait for the next piece of an upload's body, s (408 past it)."""
DEFAULT_MAX_TEMP_MB = 2048.0
"""Temp-disk space all uploads in flight may use together, MiB (507 past it)."""
DEFAULT_MAX_CONNECTIONS = 128
"""Open connections uvicorn serves at once (503 past it)."""
DEFAULT_KEEP_ALIVE_S = 5
"""Seconds an idle keep-alive connection is kept open."""

# Everything the page loads comes from this server; nothing may be sent anywhere else.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_HEADERS = [(b"content-security-policy", _CSP.encode()), (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


class _SecurityHeaders:
    """ASGI middleware adding the headers above to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + _HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _swagger_dir() -> tuple[Path | None, str]:
    """Folder of the locally installed Swagger UI (None if missing) and the OpenAPI version it reads."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None, "3.1.0"
    path = Path(swagger_ui_bundle.swagger_ui_path)
    if not (path / "swagger-ui-bundle.js").is_file():
        return None, "3.1.0"
    # Swagger UI before 5 ("swagger-ui-4.15.5") renders OpenAPI 3.0 documents only.
    major = path.name.rsplit("-", 1)[-1].split(".")[0]
    return path, "3.0.3" if major.isdigit() and int(major) < 5 else "3.1.0"


_PREDICT_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": [FIELD],
        "properties": {FIELD: {"type": "string", "format": "binary",
                               "description": "The recording: WAV, FLAC, OGG or MP3 (told by content, not name)."}},
    }}},
}



@dataclass(frozen=True)
class Limits:
    """What one upload may cost this server (see :func:`create_app` for each field)."""

    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    max_sample_rate: int = DEFAULT_MAX_SAMPLE_RATE
    max_msamples: float = DEFAULT_MAX_MSAMPLES
    long_msamples: float = DEFAULT_LONG_MSAMPLES
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    max_temp_mb: float = DEFAULT_MAX_TEMP_MB

    def check(self) -> None:
        for name, value in asdict(self).items():
            check_positive(name, "create_app", value)

    def public(self) -> dict[str, Any]:
        """The limits ``GET /api/model`` shows."""
        return {"max_upload_mb": self.max_upload_mb, "max_duration_s": self.max_duration_s,
                "max_sample_rate": self.max_sample_rate, "max_msamples": self.max_msamples,
                "formats": sorted(AUDIO_MEDIA_TYPES)}


def check_header(path: Path, filename: str, limits: Limits) -> bool:
    """Refuse an upload whose header promises too much work, before anything is decoded.

    Returns
    -------
    bool
        True when the file is long enough (``frames x channels > long_msamples`` million) to go
        to the runner's long lane.

    Raises
    ------
    RequestError
        422 unreadable header or a sample rate above ``max_sample_rate`` Hz; 413 longer than
        ``max_duration_s`` seconds or more than ``max_msamples`` million samples.
    """
    try:
        info = audio_info(path)
    except AudioLoadError as err:
        raise RequestError(422, f"{filename}: {err.reason}") from err
    if info.sample_rate > limits.max_sample_rate:
        raise RequestError(422, f"{filename}: sample rate {info.sample_rate} Hz; this server accepts up to "
                                f"{limits.max_sample_rate} Hz")
    if info.duration > limits.max_duration_s:
        raise RequestError(413, f"{filename}: {info.duration:.1f} s long; this server accepts recordings up to "
                                f"{limits.max_duration_s:g} s")
    msamples = info.duration * info.sample_rate * info.channels / 1e6
    if msamples > limits.max_msamples:
        raise RequestError(413, f"{filename}: {info.duration:.1f} s x {info.channels} channels at {info.sample_rate} Hz "
                                f"is {f'{msamples:.0f}' if msamples >= 10 else f'{msamples:.2g}'} million samples; this server decodes up to {limits.max_msamples:g} "
                                f"million per upload")
    return msamples > limits.long_msamples


def wording(classifier: Any) -> str:
    """What the model calls one of its classes ("kind of music", "bird species"): model.json's
    ``wording`` (top level or under ``model``) if it is a short string, else the neutral "class"."""
    meta = getattr(classifier, "meta", None) or {}
    model = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    for value in (meta.get("wording"), model.get("wording")):
        if isinstance(value, str) and 0 < len(value.strip()) <= 60:
            return value.strip()
    return "class"


_ERRORS = ((400, "Not a multipart form, no file, or an empty file."), (413, "Upload or recording too large or too long."),
           (415, "Not an audio file (by content)."), (422, "Audio that cannot be decoded, or a sample rate too high."),
           (408, "The upload stalled (no data for the read timeout)."), (503, "Server busy."),
           (507, "No room left for uploads in progress."))


def create_app(
    model_dir: str | Path,
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    max_sample_rate: int = DEFAULT_MAX_SAMPLE_RATE,
    max_msamples: float = DEFAULT_MAX_MSAMPLES,
    long_msamples: float = DEFAULT_LONG_MSAMPLES,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    max_temp_mb: float = DEFAULT_MAX_TEMP_MB,
    upload_dir: str | Path | None = None,
    max_pending: int = 32,
    warm_up: bool = True,
) -> "FastAPI":
    """Build the app around one model folder (loaded and verified here, once).

    Parameters
    ----------
    model_dir
        A model folder written by ``cultural-music train``.
    max_upload_mb
        Largest accepted upload in MiB; larger ones get 413, checked while the upload streams.
    max_duration_s
        Longest accepted recording in seconds (from the file header); longer ones get 413.
    max_sample_rate
        Highest accepted native sample rate in Hz (header); higher ones get 422.
    max_msamples
        Most samples (frames x channels, millions, from the header) decoded per upload; 413 past it.
    long_msamples
        Uploads with more samples (millions) than this run on the long lane, so they never delay
        shorter ones.
    read_timeout_s
        Longest wait in seconds for the next piece of an upload; a stalled upload gets 408.
    max_temp_mb
        Temp-disk MiB all uploads in flight may use together; past it 507.
    upload_dir
        Where the per-request private folders are made (default: the system temp folder).
    max_pending
        Recordings allowed to wait for the model at once; more get 503.
    warm_up
        At start-up, run one prediction on generated noise in the background so that the first
        upload is answered as fast as later ones.

    Returns
    -------
    fastapi.FastAPI
        Serve it with uvicorn (``cultural-music serve``) or test it with ``TestClient``.

    Raises
    ------
    ModelLoadError
        ``model_dir`` is not a usable model folder.
    ParameterError
        A limit is not positive.
    """
    from ..predict import Classifier

    limits = Limits(max_upload_mb, max_duration_s, max_sample_rate, max_msamples, long_msamples, read_timeout_s, max_temp_mb)
    limits.check()
    check_positive("max_pending", "create_app", max_pending)
    runner = ModelRunner(Classifier.load(model_dir), max_pending=max_pending)
    app = _new_app(runner, limits, warm_up=warm_up)
    _add_predict_route(app, runner, limits, upload_dir)
    _add_pages(app)
    app.add_middleware(_SecurityHeaders)  # type: ignore[arg-type]
    return app


def _new_app(runner: ModelRunner, limits: Limits, *, warm_up: bool) -> "FastAPI":
    """The FastAPI app with its lifespan (warm-up, shutdown), error handler and ``/api/model``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if warm_up:
            runner.warm_up()
        yield
        runner.close()

    app = FastAPI(title="cultural-music", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Name the class of a recording. Everything runs on this machine.")
    app.openapi_version = _swagger_dir()[1]
    app.state.runner = runner
    app.state.limits = limits.public()

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, err: RequestError) -> JSONResponse:
        return JSONResponse({"detail": err.message}, status_code=err.status)

    @app.get("/api/model", summary="Describe the model", response_model=dict[str, Any])
    async def model_info() -> dict[str, Any]:
        """Name, version, classes, settings and headline metrics of the model, and this server's limits."""
        return {**runner.info, "wording": wording(runner.classifier), "limits": app.state.limits}

    return app


def _add_predict_route(app: "FastAPI", runner: ModelRunner, limits: Limits, upload_dir: str | Path | None) -> None:
    """``POST /api/predict``: receive, sniff, check the header, then queue on a model lane."""
    from fastapi import Request

    from .schemas import ErrorResponse, PredictResponse

    max_bytes = int(limits.max_upload_mb * 2**20)
    budget = DiskBudget(int(limits.max_temp_mb * 2**20))
    errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse, "description": text} for code, text in _ERRORS}

    @app.post("/api/predict", summary="Name the class of an uploaded recording",
              response_model=PredictResponse, responses=errors, openapi_extra={"requestBody": _PREDICT_BODY})
    async def predict(request: Request) -> dict[str, Any]:
        """Upload one recording as ``multipart/form-data`` in the field ``file``."""
        t0 = time.perf_counter()
        folder = _private_folder(upload_dir)
        job, disk = None, budget.open()
        try:
            upload = await receive_upload(request.headers, request.stream(), folder, max_bytes=max_bytes,
                                          read_timeout_s=limits.read_timeout_s, disk=disk)
            fmt = sniff_audio(upload.head)
            if fmt is None:
                raise RequestError(415, f"{upload.filename}: not a recording this server reads (WAV, FLAC, OGG or MP3); "
                                        f"its content looks like {describe_content(upload.head)}")
            path = upload.path.rename(folder / f"upload.{fmt}")
            long = await asyncio.to_thread(check_header, path, upload.filename, limits)
            job = runner.submit(functools.partial(runner.predict_file, path, filename=upload.filename,
                                                  max_duration=limits.max_duration_s), long=long)
            result = await asyncio.wrap_future(job)
        finally:
            if job is not None and not job.done():  # cancelled request: delete once the model thread is done
                loop = asyncio.get_running_loop()
                job.add_done_callback(lambda _: loop.call_soon_threadsafe(_remove, folder, disk))
            else:
                _remove(folder, disk)
        return {**result, "format": fmt, "elapsed": time.perf_counter() - t0}


def _private_folder(upload_dir: str | Path | None) -> Path:
    """A new mode-0700 folder for one upload; 503 when the system cannot make one (no file handles, disk full)."""
    try:
        return Path(tempfile.mkdtemp(prefix="cultural-music-upload-", dir=upload_dir))
    except OSError as err:
        raise RequestError(503, f"server busy: cannot make a temp folder for the upload ({err.strerror or err}); "
                                "try again in a minute") from err


def _remove(folder: Path, disk: Any) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    disk.close()


def server_config(app: "FastAPI", host: str = "127.0.0.1", port: int = 8000, *,
                  max_connections: int = DEFAULT_MAX_CONNECTIONS, keep_alive_s: int = DEFAULT_KEEP_ALIVE_S,
                  log_level: str = "info") -> Any:
    """The ``uvicorn.Config`` ``cultural-music serve`` runs ``app`` with.

    ``max_connections`` caps open connections (more get 503 at once) and ``keep_alive_s`` closes
    idle keep-alive connections after that many seconds; a stalled body is cut by the app's
    ``read_timeout_s``.
    """
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=log_level, limit_concurrency=max_connections,
                          timeout_keep_alive=keep_alive_s)


def _add_pages(app: "FastAPI") -> None:
    """The page at ``/``, its assets under ``/static`` and the OpenAPI UI at ``/docs`` (all local)."""
    from fastapi.responses import FileResponse, HTMLResponse
    from fastapi.staticfiles import StaticFiles

    swagger, _ = _swagger_dir()

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})

    if swagger is not None:
        app.mount("/static/swagger-ui", StaticFiles(directory=swagger), name="swagger-ui")

    @app.get("/docs", include_in_schema=False, response_model=None)
    async def docs() -> HTMLResponse | FileResponse:
        if swagger is None:
            return HTMLResponse("<!doctype html><title>API docs</title><p>The interactive docs need the "
                                "<code>swagger-ui-bundle</code> package. The API description is at "
                                "<a href=\"/openapi.json\">/openapi.json</a>.</p>")
        return FileResponse(STATIC_DIR / "docs.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
