"""Password hashes for http.users: PBKDF2-SHA256 written as Django writes it.

    pbkdf2_sha256$<iterations>$<salt>$<base64 of the 32-byte key>

PBKDF2-SHA256 because it is in the standard library (hashlib.pbkdf2_hmac), its cost is one number
that is stored with each hash (raise ITERATIONS later and old hashes still verify), and the format
is Django's, so a hash made by either checks in the other. ITERATIONS = 100,000 costs about 30 ms
per check on the 2-core machine this was measured on (hashlib.pbkdf2_hmac, under load): enough to
slow an offline guesser, cheap enough for a login. A check is blocking CPU work: the viewer side
runs it in an executor (web/session.py), and keeps a successful check for a short while
(VerifiedCache), so basic auth on every MJPEG or API request does not pay it each time.

A stored value that is not such a hash is a password in plain text, which still works (compared
in constant time) and is warned about at start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from typing import Callable

ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 100_000
MIN_ITERATIONS = 1_000
MAX_ITERATIONS = 10_000_000  # a hash from the file is trusted for its cost, within reason
SALT_CHARS = 22


def _key(password: str, salt: str, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8", "surrogateescape"), salt.encode(), iterations)


def hash_password(password: str, iterations: int = ITERATIONS, salt: str | None = None) -> str:
    """The hash line of `password`, with a new random salt."""
    salt = salt or secrets.token_urlsafe(SALT_CHARS)[:SALT_CHARS]
    digest = base64.b64encode(_key(password, salt, iterations)).decode()
    return f"{ALGORITHM}${iterations}${salt}${digest}"


def _parts(stored: str) -> tuple[int, str, bytes] | None:
    algorithm, _, rest = stored.partition("$")
    iterations, _, rest = rest.partition("$")
    salt, _, digest = rest.partition("$")
    if algorithm != ALGORITHM or not iterations.isdigit() or not salt or "$" in salt or not digest:
        return None
    try:
        key = base64.b64decode(digest, validate=True)
    except ValueError:
        return None
    if not MIN_ITERATIONS <= int(iterations) <= MAX_ITERATIONS or len(key) < 16:
        return None
    return int(iterations), salt, key


def is_hashed(stored: str) -> bool:
    """Whether a stored password is a hash this module checks (else: plain text)."""
    return _parts(stored) is not None


def hash_problem(stored: str) -> str | None:
    """Why a value that starts like a hash is not one (None: a good hash, or plain text)."""
    if stored.startswith(ALGORITHM + "$") and not is_hashed(stored):
        return (f"looks like a {ALGORITHM} hash but is not one ({ALGORITHM}$ITERATIONS$SALT$BASE64, iterations "
                f"{MIN_ITERATIONS}..{MAX_ITERATIONS}); make one with `python -m camserver --hash-password`")
    return None


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


DUMMY = hash_password("not a password", salt="camserver-dummy-salt")  # what an unknown user is checked against


def verify(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored` (a hash or plain text); constant time. Blocking when hashed.

    None (no such user) is checked against a dummy hash, so the time taken does not tell names apart.
    """
    parts = _parts(stored if stored is not None else DUMMY)
    if parts is None:  # plain text
        assert stored is not None
        return hmac.compare_digest(_bytes(password), _bytes(stored))
    iterations, salt, key = parts
    ok = hmac.compare_digest(_key(password, salt, iterations), key)
    return ok and stored is not None


def needs_work(stored: str | None) -> bool:
    """Whether verify() on this value costs a hash (so it belongs off the event loop)."""
    return stored is None or is_hashed(stored)


class VerifiedCache:
    """Successful (user, password) checks, in memory only, for `ttl_s` seconds, at most `size` of them.

    Keyed by a keyed hash of user, stored value and password (the key is random per process), so
    neither a password nor a fast hash of it sits in memory; a changed stored value misses.
    """

    def __init__(self, ttl_s: float = 60.0, size: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self.clock = clock
        self._pepper = secrets.token_bytes(32)
        self._ok: OrderedDict[bytes, float] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def _key(self, name: str, stored: str, password: str) -> bytes:
        return hmac.new(self._pepper, b"\0".join(_bytes(p) for p in (name, stored, password)), hashlib.sha256).digest()

    def known(self, name: str, stored: str, password: str) -> bool:
        """Whether this check succeeded within the last ttl_s seconds."""
        key = self._key(name, stored, password)
        until = self._ok.get(key)
        if until is not None and until > self.clock():
            self.hits += 1
            return True
        if until is not None:
            del self._ok[key]
        self.misses += 1
        return False

    def remember(self, name: str, stored: str, password: str) -> None:
        """Keep a successful check."""
        key = self._key(name, stored, password)
        self._ok[key] = self.clock() + self.ttl_s
        self._ok.move_to_end(key)
        while len(self._ok) > self.size:
            self._ok.popitem(last=False)

    def clear(self) -> None:
        """Forget every check (the users changed)."""
        self._ok.clear()
