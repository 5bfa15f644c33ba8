"""What an HTTP error answer says, as the openai backend and the server's client report it."""

from __future__ import annotations

import httpx
import pytest

from reasonrank.http_errors import DETAIL_LIMIT, clip, error_detail, message_of


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"error": {"message": "bad model", "type": "x"}}, "bad model", id="openai"),
        pytest.param({"error": "overloaded"}, "overloaded", id="error-string"),
        pytest.param({"message": "m", "detail": "d"}, "m", id="cohere-message-first"),
        pytest.param({"detail": [{"loc": ["body"]}]}, '[{"loc": ["body"]}]', id="fastapi-list"),
        pytest.param({"error": {"type": "x"}}, '{"error": {"type": "x"}}', id="no-message"),
        pytest.param(["a"], '["a"]', id="not-an-object"),
    ],
)
def test_message_of(body: object, message: str) -> None:
    assert message_of(body) == message


def test_error_detail_reads_json_then_text_then_the_reason() -> None:
    assert error_detail(httpx.Response(400, json={"error": {"message": "no"}})) == "no"
    assert error_detail(httpx.Response(502, text="  upstream down \n")) == "upstream down"
    assert error_detail(httpx.Response(503, text="")) == "Service Unavailable"
    long = error_detail(httpx.Response(500, text="x" * (DETAIL_LIMIT + 10)))
    assert long == "x" * DETAIL_LIMIT + "..."


def test_clip_keeps_short_text_and_marks_a_cut() -> None:
    assert clip(" short ") == "short"
    assert clip("abcdef", limit=3) == "abc..."
