"""Web page and HTTP API: upload a recording in a browser, see its class.

``create_app(model_dir)`` builds the FastAPI app; ``cultural-music serve MODEL_DIR`` runs it
under uvicorn.  FastAPI, uvicorn and python-multipart are needed only when the app is built.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from cultural_music.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'cultural_music.serve' has no attribute {name!r}")
