"""JSON shapes of the HTTP API (they also make the OpenAPI docs at ``/docs``).

Imported by :func:`~cultural_music.serve.app.create_app` only, so pydantic stays optional.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["Segment", "TopItem", "ModelRef", "PredictResponse", "ErrorResponse"]


class Segment(BaseModel):
    """A stretch of the recording with one label."""

    label: str
    start: float = Field(description="Start in seconds from the beginning of the file.")
    end: float = Field(description="End in seconds.")
    confidence: float = Field(description="Mean probability of the label over the stretch, 0..1.")


class TopItem(BaseModel):
    label: str
    probability: float


class ModelRef(BaseModel):
    name: str
    version: str | None = None


class PredictResponse(BaseModel):
    """The class of one uploaded recording."""

    filename: str = Field(description="Name of the uploaded file as the browser sent it.")
    format: str = Field(description="Format found from the file's content: wav, flac, ogg or mp3.")
    label: str = Field(description="Most likely class ('uncertain' when the model is not sure enough).")
    confidence: float = Field(description="Probability of the most likely class, 0..1.")
    uncertain: bool = False
    probabilities: dict[str, float] = Field(description="Probability of every class; they sum to 1.")
    top: list[TopItem]
    duration: float = Field(description="Length of the recording in seconds.")
    n_clips: int = Field(description="Clips the recording was cut into.")
    timeline: list[Segment] = Field(default_factory=list, description="Label over time (long recordings).")
    model: ModelRef
    elapsed: float = Field(description="Seconds the server spent on the request.")


class ErrorResponse(BaseModel):
    detail: str = Field(description="What is wrong, naming the file.")

