"""Reading an HTTP error answer, shared by the openai backend and the server's client."""

from __future__ import annotations

import json
from typing import Any

import httpx

DETAIL_LIMIT = 500  # characters of an error body kept in a message


def clip(text: str, limit: int = DETAIL_LIMIT) -> str:
    """`text` stripped and cut to `limit` characters ("..." marks a cut)."""
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def message_of(data: Any) -> str:
    """The message of a JSON error body: OpenAI's `{"error": {"message"}}`, `{"error": str}`,
    `{"message"}` or `{"detail"}` (Cohere, Jina, FastAPI), else the body itself, clipped."""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        for key in ("message", "detail"):
            value = data.get(key)
            if value:
                return value if isinstance(value, str) else clip(json.dumps(value))
    return clip(json.dumps(data))


def error_detail(response: httpx.Response) -> str:
    """What an error answer says: its JSON message (`message_of`), else its text, clipped."""
    try:
        data = response.json()
    except ValueError:  # json.JSONDecodeError, UnicodeDecodeError
        text = response.text.strip()
        return clip(text) if text else response.reason_phrase or "no detail"
    return message_of(data)
