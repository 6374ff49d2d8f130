"""Reading client frames on the exchange's WebSockets: text frames only, each a JSON object.

Starlette's `receive_text()` fails with a server-side KeyError on a binary frame, and `json.loads`
raises RecursionError (not ValueError) on deeply nested input: both would surface as a traceback
instead of a clear answer. These helpers turn every malformed frame into a `FrameError` with a stable
code, which the sessions answer as an error message, keeping the connection open.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect


class FrameError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


BINARY_FRAME = object()   # what `receive_text_or_binary` returns for a binary frame


async def receive_text_or_binary(websocket: WebSocket) -> str | object:
    """The next text frame, or `BINARY_FRAME`; raises WebSocketDisconnect when the client leaves."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
    text = message.get("text")
    return text if text is not None else BINARY_FRAME


def parse_object(text: str | object) -> dict[str, Any]:
    """A frame as a JSON object, or `FrameError` saying what is wrong with it."""
    if not isinstance(text, str):
        raise FrameError("binary_frame", "binary frames are not accepted: send JSON as text frames")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise FrameError("malformed_json", "the message is not valid JSON (or nests too deeply)") from None
    if not isinstance(message, dict):
        raise FrameError("malformed_json", "a message must be a JSON object")
    return message
