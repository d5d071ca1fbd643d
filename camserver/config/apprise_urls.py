"""Apprise URLs hold secrets (bot tokens, passwords, private topics): validate them, show them
redacted, and keep them out of every log line.

Everything in camserver that hands a URL to Apprise goes through this module. It registers the
URL's secret parts, and from the first use on:

- Apprise's own lines (they print topics, payloads and URLs) are scrubbed of every registered
  secret and demoted to debug: camserver says what went wrong itself, once, redacted;
- urllib3's debug lines (request lines carry topics and bot tokens in their paths) are scrubbed.

`redact(url)` is the one way a URL is shown: scheme and host, and not even the host when the
service keeps a secret there (Telegram's bot token, Pushover's app token).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator
from urllib.parse import parse_qsl, quote, quote_plus, unquote


SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://")
MIN_SECRET = 3  # shorter pieces of a URL are not worth hiding (and would garble every line)
# loggers that print URLs or request lines; their records are scrubbed in place
SCRUBBED_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager", "urllib3.util.retry")

_lock = threading.Lock()
_secrets: dict[str, frozenset[str]] = {}  # url -> its secret pieces
_pattern: re.Pattern[str] | None = None
_guarded = False
_local = threading.local()  # .lines: Apprise warnings of the send running on this thread


def scrub(text: str) -> str:
    """`text` with every registered secret replaced by ***."""
    pattern = _pattern
    return pattern.sub("***", text) if pattern is not None else text


def _split_netloc(rest: str) -> tuple[str, str, str]:
    """(userinfo, host[:port], path?query#fragment) of what follows "scheme://"."""
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, _, hostport = netloc.rpartition("@")
    return userinfo, hostport, tail


def _host_is_public(url: str, plugin: Any) -> bool:
    """Whether Apprise itself shows the host in its privacy URL (it masks hosts that are tokens)."""
    if plugin is None:
        return False
    _, hostport, _ = _split_netloc(SCHEME_RE.sub("", url, count=1))
    m = SCHEME_RE.match(private := plugin.url(privacy=True))
    shown = _split_netloc(private[m.end():] if m else private)[1]
    host = hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport
    return bool(host) and shown.split(":")[0].lower() == host.lower()


def secrets_of(url: str, host_public: bool) -> set[str]:
    """Every piece of `url` that could be a secret, in the forms a log line could show it."""
    m = SCHEME_RE.match(url)
    rest = url[m.end():] if m else url
    userinfo, hostport, tail = _split_netloc(rest)
    pieces = {url, rest}
    pieces.update(p for p in userinfo.split(":") if p)
    if userinfo:  # HTTP basic auth, as an Authorization header would carry it
        pieces.add(base64.b64encode(unquote(userinfo).encode()).decode())
    if not host_public:
        pieces.add(hostport)
        pieces.update(hostport.split(":"))
    path, _, query = tail.partition("?")
    query, _, fragment = query.partition("#")
    path, _, frag2 = path.partition("#")
    pieces.update(p for p in path.split("/") if p)
    pieces.update(v for _, v in parse_qsl(query, keep_blank_values=False))
    pieces.update(p for p in (fragment, frag2) if p)
    forms: set[str] = set()
    for p in pieces:
        forms.update((p, unquote(p), quote(p, safe=""), quote_plus(p, safe="")))
    return {f for f in forms if len(f) >= MIN_SECRET}


def register(url: str, host_public: bool) -> None:
    """Make scrub() hide the secrets of `url` (replacing what an earlier call registered for it)."""
    global _pattern
    pieces = frozenset(secrets_of(url, host_public))
    with _lock:
        if _secrets.get(url) == pieces:
            return
        _secrets[url] = pieces
        ordered = sorted(set().union(*_secrets.values()), key=len, reverse=True)  # longest first
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


class _ScrubFilter(logging.Filter):
    """Replaces registered secrets in a record's message (urllib3 prints request paths at debug)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is not None:
            try:
                text = record.getMessage()
            except Exception:  # a bad format string in a library must not break a send
                return True
            record.msg, record.args = scrub(text), None
        return True


class _AppriseFilter(_ScrubFilter):
    """Apprise's records: scrubbed, kept for the send running on this thread, and shown only at debug.

    A filter on the logger rather than a handler, so that every handler (the server's, a test's)
    only ever sees the scrubbed text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        super().filter(record)
        lines = getattr(_local, "lines", None)
        if lines is not None and record.levelno >= logging.WARNING:
            lines.append(str(record.msg))
        if record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def guard_logging() -> None:
    """Scrub Apprise's and urllib3's log records (once per process, before Apprise is imported)."""
    global _guarded
    with _lock:
        if _guarded:
            return
        _guarded = True
    logging.getLogger("apprise").addFilter(_AppriseFilter())
    for name in SCRUBBED_LOGGERS:
        logging.getLogger(name).addFilter(_ScrubFilter())


@contextmanager
def apprise_warnings() -> Iterator[list[str]]:
    """Collect the (scrubbed) warnings Apprise logs on this thread inside the block."""
    lines: list[str] = []
    _local.lines = lines
    try:
        yield lines
    finally:
        _local.lines = None


def _apprise() -> Any:
    """The apprise module, imported only once its logger is guarded."""
    guard_logging()
    import apprise

    return apprise


def instantiate(url: str) -> Any:
    """The Apprise plugin for `url` (None if Apprise cannot use it), with its secrets registered first."""
    apprise = _apprise()
    register(url, host_public=False)  # everything, before Apprise logs anything about it
    plugin = apprise.Apprise.instantiate(url, asset=apprise.AppriseAsset(secure_logging=True))
    if _host_is_public(url, plugin):
        register(url, host_public=True)  # a server name like ntfy.sh stays readable in debug lines
    return plugin


def url_problem(url: str) -> str | None:
    """Why Apprise cannot use `url` (unknown scheme, a missing or malformed part), or None."""
    m = SCHEME_RE.match(url)
    if not m:
        return "is not a URL (scheme://...); see https://github.com/caronc/apprise/wiki for the services"
    _apprise()
    from apprise.manager_plugins import NotificationManager

    scheme = m.group(1).lower()
    register(url, host_public=False)
    if scheme not in NotificationManager():
        return f"unknown scheme {scheme}://; see https://github.com/caronc/apprise/wiki for the services"
    if instantiate(url) is None:
        return f"Apprise cannot use this {scheme}:// URL (a missing or malformed part)"
    return None


@lru_cache(maxsize=256)
def redact(url: str) -> str:
    """scheme://host[:port] of a notification URL; scheme://*** when the host is a secret or unknown."""
    m = SCHEME_RE.match(url) if isinstance(url, str) else None
    if not m:
        return "(not a URL)"
    scheme = m.group(1).lower()
    plugin = instantiate(url)
    _, hostport, _ = _split_netloc(url[m.end():])
    if _host_is_public(url, plugin) and hostport:
        return f"{scheme}://{hostport}"
    return f"{scheme}://***"
