"""Credentials out of everything printed or logged: the one redaction helper.

`redact(text)` masks the userinfo of every URL in a text (`http://user:pw@host` ->
`http://***@host`), `Authorization`-style header values (`Bearer abc` -> `Bearer ***`) and
`api_key=...`-style query parameters. `RedactingFilter` applies it to log records; the CLI and
the server install it on the root handlers, so a URL with credentials never reaches a log line.
"""

from __future__ import annotations

import logging
import re

_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@'\"<>]+)@"
)
# "Bearer <token>" anywhere; "Authorization: <scheme> <credentials>" header lines
_BEARER = re.compile(r"(?i)\b(?P<kind>bearer)(?P<sep>\s+)(?P<secret>[A-Za-z0-9._~+/=-]+)")
_AUTH_HEADER = re.compile(r"(?i)(?P<kind>authorization['\"]?\s*[:=]\s*['\"]?)"
                          r"(?P<secret>(?:[A-Za-z]+ +)?[^\s'\",;}]+)")
_QUERY_SECRET = re.compile(
    r"(?i)(?P<name>[?&](?:api[_-]?key|key|token|access_token|password|secret)=)"
    r"(?P<value>[^&\s'\"]+)"
)
MASK = "***"


def redact(text: str) -> str:
    """`text` with URL credentials, bearer/basic tokens and secret query parameters masked."""
    if not text:
        return text
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    text = _BEARER.sub(lambda m: f"{m.group('kind')}{m.group('sep')}{MASK}", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m.group('kind')}{MASK}", text)
    return _QUERY_SECRET.sub(lambda m: f"{m.group('name')}{MASK}", text)


def redact_url(url: str) -> str:
    """A URL fit to print: its userinfo and secret query parameters masked."""
    return redact(url)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and exception text) with `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's own error path
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_redaction(*loggers: logging.Logger) -> None:
    """Add a `RedactingFilter` to every handler of the root logger and of `loggers` (once)."""
    for logger in (logging.getLogger(), *loggers):
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
