"""Base64 queue messages, as the Functions host reads them (host.json `messageEncoding: base64`)."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

if TYPE_CHECKING:
    from azure.core.pipeline import PipelineResponse


class NotBase64(str):
    """The raw text of a message that is not valid base64 (so not from a base64-encoding producer)."""


class _Base64Decode(TextBase64DecodePolicy):
    """Strict base64 per message; one undecodable message must not make the whole receive call fail."""

    def decode(self, content: str, response: PipelineResponse[Any, Any]) -> str:  # noqa: ARG002
        try:
            return base64.b64decode(content.encode("ascii"), validate=True).decode("utf-8")
        except (ValueError, binascii.Error):  # UnicodeError is a ValueError
            return NotBase64(content)


def base64_policies() -> tuple[TextBase64EncodePolicy, TextBase64DecodePolicy]:
    return TextBase64EncodePolicy(), _Base64Decode()
