"""The Azure AI Model Inference image embeddings request body (`POST /images/embeddings`); the response is the
text embeddings response (`shared.schemas.embeddings.EmbeddingsResponse`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class ImageEmbeddingInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: StrictStr  # a base64 data URL, `data:image/{format};base64,{data}` (or bare base64)
    text: StrictStr | None = None  # embedded with the image into one vector


class ImageEmbeddingsRequest(BaseModel):
    # Unknown parameters are kept in `model_extra`; the `extra-parameters` header decides their fate.
    model_config = ConfigDict(extra="allow")

    input: list[ImageEmbeddingInput]
    model: str | None = None
    dimensions: int | None = Field(default=None, gt=0)
    encoding_format: Literal["float", "base64", "int8", "uint8", "binary", "ubinary"] = "float"
    input_type: Literal["text", "query", "document"] | None = None


class ClipPayload(BaseModel):
    """The queued payload of an image-embeddings job: each input a text (from the text embeddings routes) or an
    image with its optional text (from `/images/embeddings`)."""

    model_config = ConfigDict(extra="forbid")

    input: list[StrictStr | ImageEmbeddingInput]
    model: str | None = None
    dimensions: int | None = Field(default=None, gt=0)
    encoding_format: Literal["float", "base64", "int8", "uint8", "binary", "ubinary"] = "float"
    input_type: Literal["text", "query", "document"] | None = None
    user: str | None = None
