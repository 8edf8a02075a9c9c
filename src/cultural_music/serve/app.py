"""The web app: a one-page UI at ``/`` and a small JSON API, all served from this machine.

``POST /api/predict`` takes a multipart upload (field ``file``) and answers the kind of music;
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
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import check_positive
from .errors import RequestError
from .runner import ModelRunner
from .sniff import AUDIO_MEDIA_TYPES, describe_content, sniff_audio
from .upload import FIELD, receive_upload

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["create_app", "STATIC_DIR", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_MAX_DURATION_S"]

STATIC_DIR = Path(__file__).with_name("static")
DEFAULT_MAX_UPLOAD_MB = 100.0
DEFAULT_MAX_DURATION_S = 1800.0

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


def create_app(
    model_dir: str | Path,
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
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
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    from ..predict import Classifier
    from .schemas import ErrorResponse, PredictResponse

    check_positive("max_upload_mb", "create_app", max_upload_mb)
    check_positive("max_duration_s", "create_app", max_duration_s)
    check_positive("max_pending", "create_app", max_pending)
    max_bytes = int(max_upload_mb * 2**20)
    runner = ModelRunner(Classifier.load(model_dir), max_pending=max_pending)
    limits = {"max_upload_mb": max_upload_mb, "max_duration_s": max_duration_s, "formats": sorted(AUDIO_MEDIA_TYPES)}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if warm_up:
            runner.warm_up()
        yield
        runner.close()

    swagger, openapi_version = _swagger_dir()
    app = FastAPI(title="cultural-music", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Name the kind of music of a recording. Everything runs on this machine.")
    app.openapi_version = openapi_version
    app.state.runner = runner
    app.state.limits = limits
    errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse, "description": text} for code, text in (
        (400, "Not a multipart form, no file, or an empty file."), (413, "Upload or recording too large or too long."),
        (415, "Not an audio file (by content)."), (422, "Audio that cannot be decoded."), (503, "Server busy."))}

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, err: RequestError) -> JSONResponse:
        return JSONResponse({"detail": err.message}, status_code=err.status)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})

    @app.get("/api/model", summary="Describe the model", response_model=dict[str, Any])
    async def model_info() -> dict[str, Any]:
        """Name, version, classes, settings and headline metrics of the model, and this server's limits."""
        return {**runner.info, "limits": limits}

    @app.post("/api/predict", summary="Name the kind of music of an uploaded recording",
              response_model=PredictResponse, responses=errors, openapi_extra={"requestBody": _PREDICT_BODY})
    async def predict(request: Request) -> dict[str, Any]:
        """Upload one recording as ``multipart/form-data`` in the field ``file``."""
        t0 = time.perf_counter()
        folder = Path(tempfile.mkdtemp(prefix="cultural-music-upload-", dir=upload_dir))
        job = None
        try:
            upload = await receive_upload(request.headers, request.stream(), folder, max_bytes=max_bytes)
            fmt = sniff_audio(upload.head)
            if fmt is None:
                raise RequestError(415, f"{upload.filename}: not a recording this server reads (WAV, FLAC, OGG or MP3); "
                                        f"its content looks like {describe_content(upload.head)}")
            path = upload.path.rename(folder / f"upload.{fmt}")
            job = runner.submit(functools.partial(runner.predict_file, path, filename=upload.filename,
                                                  max_duration=max_duration_s))
            result = await asyncio.wrap_future(job)
        finally:
            remove = functools.partial(shutil.rmtree, folder, ignore_errors=True)
            if job is not None and not job.done():  # cancelled request: delete once the model thread is done
                job.add_done_callback(lambda _: remove())
            else:
                remove()
        return {**result, "format": fmt, "elapsed": time.perf_counter() - t0}

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
    app.add_middleware(_SecurityHeaders)  # type: ignore[arg-type]
    return app
