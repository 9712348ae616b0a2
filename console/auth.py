"""Who may use the console, and how a write proves it came from the console's own page.

Modes:

* **open** — bound to loopback with no credentials configured: a local operator, pages and API
  open. Writes still need the page's CSRF token (a web page in the operator's browser can post
  to 127.0.0.1 too), and the ``Host`` must be a loopback name (a rebinding DNS name pointing
  at 127.0.0.1 gets 403).
* **credentials** — a token (``SKYSENTRY_CONSOLE__TOKEN``) and/or users with PBKDF2-hashed
  passwords (``SKYSENTRY_CONSOLE__USERS``). Every page, API call and event stream needs a session
  (the login form → a signed, HttpOnly, SameSite=Strict cookie) or ``Authorization: Bearer
  <token>``. Beyond loopback the console refuses to start without them (:func:`check_exposure`).

Writes (POST/DELETE) are refused with 403 when the ``Origin`` (or ``Sec-Fetch-Site``) says
another site sent them, and, unless they carry the bearer token, when ``X-CSRF-Token`` is not the
session's own token (each session has one, put in the page's ``<meta name="csrf-token">``).

Sessions are stateless signed cookies (HMAC-SHA256, standard library only): logging out clears
the cookie; a stolen cookie works until it expires (``session_ttl``), as with any bearer secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

ALGORITHM = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
MIN_ITERATIONS = 100_000
COOKIE = "skysentry_session"
CSRF_HEADER = "x-csrf-token"
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_B64 = r"[A-Za-z0-9+/]+={0,2}"
_HASH = re.compile(rf"^{ALGORITHM}\$(\d+)\$({_B64})\$({_B64})$")
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class CredentialsError(ValueError):
    """Badly written credentials (a user entry or password hash); the message says the form."""


class ExposureError(RuntimeError):
    """The console would listen beyond loopback without credentials."""


# ------------------------------------------------------------------------------ passwords


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    """``pbkdf2_sha256$<iterations>$<salt>$<hash>`` (base64): what ``SKYSENTRY_CONSOLE__USERS`` holds."""
    if not password:
        raise CredentialsError("an empty password cannot be hashed")
    if iterations < MIN_ITERATIONS:
        raise CredentialsError(f"at least {MIN_ITERATIONS} iterations")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def check_hash(encoded: str) -> tuple[int, bytes, bytes]:
    """(iterations, salt, digest) of a well-formed hash; CredentialsError otherwise."""
    m = _HASH.match(encoded)
    if not m:
        raise CredentialsError(f"not a password hash: expected {ALGORITHM}$<iterations>$<salt>$<hash>, as "
                               "`skysentry console hash-password` prints it")
    iterations = int(m.group(1))
    if iterations < MIN_ITERATIONS:
        raise CredentialsError(f"password hash with {iterations} iterations is too weak (at least {MIN_ITERATIONS}); "
                               "make a new one with `skysentry console hash-password`")
    return iterations, _unb64(m.group(2)), _unb64(m.group(3))


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` hashes to ``encoded`` (constant-time compare). Slow on purpose
    (PBKDF2): call it from a thread in async code."""
    try:
        iterations, salt, digest = check_hash(encoded)
    except CredentialsError:
        return False
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations), digest)


def parse_users(text: str | None) -> dict[str, str]:
    """``name:hash`` entries separated by commas, spaces or new lines → {name: hash}."""
    users: dict[str, str] = {}
    for entry in re.split(r"[,\s]+", (text or "").strip()):
        if not entry:
            continue
        name, sep, encoded = entry.partition(":")
        if not sep or not _USER.match(name):
            raise CredentialsError(f"console user entry {name[:40]!r}...: write name:{ALGORITHM}$iterations$salt$hash "
                                   "(name: letters, digits, . _ @ -)")
        try:
            check_hash(encoded)
        except CredentialsError as exc:
            raise CredentialsError(f"console user {name!r}: {exc}") from None
        if name in users:
            raise CredentialsError(f"console user {name!r} is listed twice")
        users[name] = encoded
    return users


# A hash to verify against for unknown user names, so they take as long as known ones.
_DUMMY = hash_password("not-a-password", iterations=MIN_ITERATIONS, salt=b"skysentry-dummy!")


@dataclass(frozen=True)
class Credentials:
    token: str | None
    users: dict[str, str]

    @classmethod
    def of(cls, token: str | None, users: str | None) -> "Credentials":
        token = token.strip() if token else None
        if token is not None and len(token) < 16:
            raise CredentialsError("SKYSENTRY_CONSOLE__TOKEN is shorter than 16 characters: use a long random one, "
                                   "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        return cls(token or None, parse_users(users))

    @property
    def configured(self) -> bool:
        return bool(self.token or self.users)

    def token_ok(self, presented: str | None) -> bool:
        return bool(self.token and presented) and hmac.compare_digest(self.token.encode(), presented.encode())

    def password_ok(self, name: str, password: str) -> bool:
        """Blocking (PBKDF2): run it in a thread."""
        encoded = self.users.get(name)
        ok = verify_password(password, encoded or _DUMMY)
        return ok and encoded is not None


# ------------------------------------------------------------------------------ exposure


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and the usual names for them; everything else (0.0.0.0, ::, a LAN
    address, a hostname) is beyond loopback."""
    h = host.strip().strip("[]").lower()
    if h in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, credentials: Credentials) -> None:
    if not is_loopback(host) and not credentials.configured:
        raise ExposureError(
            f"refusing to listen on {host} without credentials: anyone who reaches it could watch the cameras and "
            "silence alerts. Set SKYSENTRY_CONSOLE__TOKEN (a long random token) or SKYSENTRY_CONSOLE__USERS "
            "(name:hash, from `skysentry console hash-password`) in the environment, or bind 127.0.0.1.")


def host_is_loopback(host_header: str | None) -> bool:
    """The request's ``Host`` (name[:port]) names loopback."""
    if not host_header:
        return False
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    if host_header.startswith("["):
        name = host_header[1:].split("]", 1)[0]
    return is_loopback(name)


# ------------------------------------------------------------------------------ sessions


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    expires: int
    anonymous: bool = False  # open mode: a local operator, no login


class SessionSigner:
    """Signed cookies: ``v1.<payload>.<hmac>``, both base64url; the payload is JSON."""

    def __init__(self, secret: str | bytes | None = None):
        key = secret.encode() if isinstance(secret, str) else secret
        self._key = key or secrets.token_bytes(32)

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, f"session\n{payload}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def new(self, user: str, ttl_s: float, *, anonymous: bool = False) -> tuple[Session, str]:
        session = Session(user, secrets.token_urlsafe(24), int(time.time() + ttl_s), anonymous)
        body = json.dumps({"u": session.user, "c": session.csrf, "e": session.expires, "a": int(anonymous)},
                          separators=(",", ":"))
        payload = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
        return session, f"v1.{payload}.{self._mac(payload)}"

    def read(self, cookie: str | None, *, now: float | None = None) -> Session | None:
        """The session of a cookie we signed and that has not expired; None otherwise."""
        if not cookie or cookie.count(".") != 2:
            return None
        version, payload, mac = cookie.split(".")
        if version != "v1" or not hmac.compare_digest(self._mac(payload), mac):
            return None
        try:
            doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = Session(str(doc["u"]), str(doc["c"]), int(doc["e"]), bool(doc.get("a")))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > (time.time() if now is None else now) else None


# ------------------------------------------------------------------------------ requests


def csrf_ok(session: Session | None, presented: str | None) -> bool:
    return session is not None and bool(presented) and hmac.compare_digest(session.csrf.encode(), presented.encode())


def _origin_of(scheme: str, netloc: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) with the scheme's default port filled in."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port or {"http": 80, "https": 443}.get(scheme.lower())
    except ValueError:
        return None
    return scheme.lower(), (parts.hostname or "").lower(), port


def cross_site(headers, scheme: str, host_header: str | None) -> str | None:
    """Why a request came from another site (None: it did not say so). ``Origin``, when sent,
    must be the console's own scheme://host[:port] (as the ``Host`` header, or a proxy's
    ``X-Forwarded-Host``/``-Proto``, names it); ``Sec-Fetch-Site`` must not be ``cross-site``."""
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return "Sec-Fetch-Site: cross-site"
    origin = headers.get("origin")
    if origin is None:
        return None
    parts = urlsplit(origin) if "://" in origin else None
    theirs = _origin_of(parts.scheme, parts.netloc) if parts else None
    own = {_origin_of(scheme, host_header or "")}
    if headers.get("x-forwarded-host"):
        own.add(_origin_of(headers.get("x-forwarded-proto", scheme), headers["x-forwarded-host"]))
    if theirs is None or theirs not in own:
        return f"Origin {origin[:100]!r} is not this console"
    return None
