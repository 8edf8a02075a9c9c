"""The one error the web layer raises on purpose: a request it cannot answer, with its HTTP status."""

from __future__ import annotations

from cultural_music.errors import CulturalMusicError

__all__ = ["RequestError"]


class RequestError(CulturalMusicError):
    """A request that cannot be answered; the app turns it into ``{"detail": message}``.

    Parameters
    ----------
    status
        HTTP status code: 400 bad form, 413 too large or too long, 415 not audio, 422 audio
        that cannot be decoded, 503 server busy.
    message
        What is wrong, in words a person at the browser understands; names the file if known.
    """

    def __init__(self, status: int, message: str) -> None:
        self.status = int(status)
        self.message = message
        super().__init__(message)
