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
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cultural_music import __version__
from cultural_music.serve.errors import RequestError
from cultural_music.serve.limits import Limits, check_header, is_long
from cultural_music.serve.runner import ModelRunner
from cultural_music.serve.sniff import AUDIO_MEDIA_TYPES, describe_content, sniff_audio
from cultural_music.serve.upload import FIELD, UploadSpace, receive_upload, timed_chunks

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

__all__ = ["create_app", "STATIC_DIR", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_MAX_DURATION_S", "DEFAULT_LABEL_NOUN"]

STATIC_DIR = Path(__file__).with_name("static")
DEFAULT_MAX_UPLOAD_MB = Limits.max_upload_mb
DEFAULT_MAX_DURATION_S = Limits.max_duration_s
DEFAULT_LABEL_NOUN = "class"
"""What the page and API call a model's label when ``model.json`` has no ``label_noun``."""
# Statuses answered before the request body was read to its end: the connection is closed after them.
_CLOSE_AFTER = {408, 413, 507}

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


_ERROR_DOCS = ((400, "Not a multipart form, no file, or an empty file."), (408, "The upload stalled or took too long."),
               (413, "Upload or recording too large, too long or too many samples."),
               (415, "Not an audio file (by content)."), (422, "Audio that cannot be decoded, or a sample rate too high."),
               (503, "Server busy."), (507, "The server's space for uploads in progress is full."))


def _label_noun(classifier: Any) -> str:
    """The model's own word for its labels (``label_noun`` in model.json), else ``"class"``."""
    noun = getattr(classifier, "meta", {}).get("label_noun")
    if isinstance(noun, str) and 0 < len(noun.strip()) <= 60:
        return noun.strip()
    return DEFAULT_LABEL_NOUN


def _no_room(err: OSError) -> RequestError:
    return RequestError(503, f"the server cannot store the upload now ({err.strerror or err}); try again in a minute")


class _Service:
    """What the routes share: the limits, the upload folders and the two model lanes.

    Recordings with little to decode run on ``runner``; long ones (:func:`~.limits.is_long`)
    on ``long_runner``, a second copy of the model on its own thread, so a long upload never
    holds up the short ones behind it.
    """

    def __init__(self, model_dir: str | Path, limits: Limits, upload_dir: str | Path | None) -> None:
        from cultural_music.inference.classifier import Classifier

        classifier = Classifier.load(model_dir)
        self.limits = limits
        self.runner = ModelRunner(classifier, max_pending=limits.max_pending)
        self.long_runner = ModelRunner(Classifier.load(model_dir), max_pending=limits.max_pending)
        self.space = UploadSpace(int(limits.max_temp_mb * 2**20), upload_dir)
        self.label_noun = _label_noun(classifier)

    def info(self) -> dict[str, Any]:
        limits = {**self.limits.public(), "formats": sorted(AUDIO_MEDIA_TYPES)}
        return {**self.runner.info, "label_noun": self.label_noun, "limits": limits}

    async def _receive(self, request: "Request", folder: Path) -> tuple[Path, str, str]:
        """Save the upload in ``folder`` and sniff it: (path, file name, format)."""
        lim = self.limits
        chunks = timed_chunks(request.stream(), idle_s=lim.body_timeout_s, total_s=lim.upload_timeout_s)
        upload = await receive_upload(request.headers, chunks, folder, max_bytes=lim.max_bytes,
                                      reserve=self.space.reserver(folder))
        fmt = sniff_audio(upload.head)
        if fmt is None:
            raise RequestError(415, f"{upload.filename}: not a recording this server reads (WAV, FLAC, OGG or MP3); "
                                    f"its content looks like {describe_content(upload.head)}")
        return upload.path.rename(folder / f"upload.{fmt}"), upload.filename, fmt

    async def predict(self, request: "Request") -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            folder = self.space.new_folder()
        except OSError as err:
            raise _no_room(err) from err
        job = None
        try:
            path, name, fmt = await self._receive(request, folder)
            info = await asyncio.to_thread(check_header, path, name, self.limits)  # refuse before decoding
            runner = self.long_runner if is_long(info, self.limits) else self.runner
            job = runner.submit(functools.partial(runner.predict_file, path, filename=name,
                                                  max_duration=self.limits.max_duration_s))
            result = await asyncio.wrap_future(job)
        except OSError as err:  # no file handles or disk left: a clear 503, never a 500
            raise _no_room(err) from err
        finally:
            if job is not None and not job.done():  # cancelled request: delete once the model thread is done
                job.add_done_callback(lambda _: self.space.remove(folder))
            else:
                self.space.remove(folder)
        return {**result, "format": fmt, "elapsed": time.perf_counter() - t0}

    def start(self, warm_up: bool) -> None:
        if warm_up:
            self.runner.warm_up()
            self.long_runner.warm_up()

    def close(self) -> None:
        self.runner.close()
        self.long_runner.close()
        self.space.sweep()


async def _request_error(_: "Request", err: RequestError) -> Any:
    """``{"detail": message}`` with the error's status; closes the connection when the body was not read."""
    from fastapi.responses import JSONResponse

    headers = {"connection": "close"} if err.status in _CLOSE_AFTER else None
    return JSONResponse({"detail": err.message}, status_code=err.status, headers=headers)


def _add_api_routes(app: "FastAPI", service: _Service) -> None:
    from fastapi import Request

    from cultural_music.serve.schemas import ErrorResponse, PredictResponse

    errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse, "description": text}
                                               for code, text in _ERROR_DOCS}

    @app.get("/api/model", summary="Describe the model", response_model=dict[str, Any])
    async def model_info() -> dict[str, Any]:
        """Name, version, classes, the word for its labels (``label_noun``), settings, headline
        metrics of the model, and this server's limits."""
        return service.info()

    @app.post("/api/predict", summary="Classify an uploaded recording",
              response_model=PredictResponse, responses=errors, openapi_extra={"requestBody": _PREDICT_BODY})
    async def predict(request: Request) -> dict[str, Any]:
        """Upload one recording as ``multipart/form-data`` in the field ``file``."""
        return await service.predict(request)


def _add_page_routes(app: "FastAPI") -> None:
    from fastapi.responses import FileResponse, HTMLResponse
    from fastapi.staticfiles import StaticFiles

    swagger, app.openapi_version = _swagger_dir()

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


def create_app(
    model_dir: str | Path,
    *,
    limits: Limits | None = None,
    upload_dir: str | Path | None = None,
    warm_up: bool = True,
    **limit_changes: Any,
) -> "FastAPI":
    """Build the app around one model folder (loaded and verified here, once per model lane).

    Parameters
    ----------
    model_dir
        A model folder written by ``cultural-music train``.
    limits
        The server's limits (:class:`~.limits.Limits`; default: its defaults).
    upload_dir
        Where the per-request private folders are made (default: the system temp folder).
    warm_up
        At start-up, run one prediction on generated noise in the background so that the first
        upload is answered as fast as later ones.
    **limit_changes
        Single limits on top of ``limits``, by :class:`~.limits.Limits` field name, e.g.
        ``max_upload_mb=20`` (MiB), ``max_duration_s=600`` (s), ``max_pending=8``.

    Returns
    -------
    fastapi.FastAPI
        Serve it with :func:`~.server.make_server` (``cultural-music serve``) or test it with ``TestClient``.

    Raises
    ------
    ModelLoadError
        ``model_dir`` is not a usable model folder.
    ParameterError
        A limit is not positive, or not a known limit.
    """
    from fastapi import FastAPI

    service = _Service(model_dir, Limits.of(limits, **limit_changes), upload_dir)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start(warm_up)
        yield
        service.close()

    app = FastAPI(title="cultural-music", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Classify a recording with a trained model. Everything runs on this machine.")
    app.state.runner, app.state.long_runner, app.state.space = service.runner, service.long_runner, service.space
    app.state.limits = service.limits

    app.add_exception_handler(RequestError, _request_error)  # type: ignore[arg-type]
    _add_api_routes(app, service)
    _add_page_routes(app)
    app.add_middleware(_SecurityHeaders)  # type: ignore[arg-type]
    return app
