"""Log lines a client can influence: throttled (a peer could repeat them thousands of times a
second), with its text escaped (a newline or an ANSI escape in a camera's hello must not forge a
log line), and with credentials redacted from the libraries' request lines."""

from __future__ import annotations

import logging
import re
import time
from typing import Any
from urllib.parse import urlsplit

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s\"']*", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"((?:proxy-)?authorization\s*[:=]\s*)([^\r\n,'\"]*)", re.IGNORECASE)
_AUTH_TUPLE = re.compile(r"(\('(?:proxy-)?authorization',\s*')([^']*)", re.IGNORECASE)
# a one-time firmware link: whoever reads it can fetch the image (Wi-Fi password, camera token) first
_OTA_LINK = re.compile(r"(/ota/)[A-Za-z0-9_-]+")


def printable(text: object, limit: int = 200) -> str:
    """`text` cut to `limit` characters with control and bidi characters escaped (\\n, \\x1b, \\u202e)."""
    s = str(text)
    cut = len(s) > limit
    s = _CONTROL.sub(lambda m: repr(m.group())[1:-1] if m.group() in "\n\r\t" else f"\\u{ord(m.group()):04x}", s[:limit])
    return s + ("..." if cut else "")


def url_for_log(url: str) -> str:
    """scheme://host[:port]/path of a URL: no user:password, no query (they may hold secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def redact(text: str) -> str:
    """`text` with ?token= values, Authorization header values and OTA link tokens replaced by ***."""
    text = _TOKEN_IN_URL.sub(r"\1***", text)
    text = _OTA_LINK.sub(r"\1***", text)
    text = _AUTH_TUPLE.sub(r"\1***", text)
    return _AUTH_HEADER.sub(r"\1***", text)


class RedactCredentials(logging.Filter):
    """Rewrites each record's message with tokens and Authorization values redacted.

    On the libraries' loggers that print request lines and headers (websockets at debug level,
    aiohttp's access log): camserver's own lines never contain credentials.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class ThrottledLog:
    """At most one line per key per interval; the next line says how many were held back."""

    MAX_KEYS = 1024  # keys are camera ids or peers; forget them all rather than grow

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last: dict[str, tuple[float, int]] = {}  # key -> (time logged, lines held back since)

    def warning(self, key: str, msg: str, *args: Any) -> None:
        """Log `msg % args` at warning level unless `key` logged within the interval."""
        self.log(logging.WARNING, key, msg, *args)

    def log(self, level: int, key: str, msg: str, *args: Any) -> None:
        """Log at `level`, throttled per key."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval_s:
            self._last[key] = (last[0], last[1] + 1)
            return
        if len(self._last) >= self.MAX_KEYS:
            self._last.clear()
        held = last[1] if last else 0
        self._last[key] = (now, 0)
        if held:
            msg += " (%d similar lines held back)"
            args = (*args, held)
        self.logger.log(level, msg, *args)
