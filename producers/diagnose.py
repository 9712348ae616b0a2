"""Why a camera stream cannot be opened, in words.

OpenCV only says "not opened"; the cause is in FFmpeg's log lines, which are silenced (see
:mod:`producers.camera`). So when an open fails, we ask the camera ourselves, the way a
client would: connect (refused? timed out? unknown host?), then for RTSP ``DESCRIBE`` (401
unauthorised, 404 not found) and ``SETUP`` with the configured transport (461: the camera
does not offer RTP over TCP or UDP), and for HTTP a ``GET`` of the stream. Credentials in the
URL are sent as the camera asks (Basic or Digest) and never appear in a message.
"""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote, urlsplit, urlunsplit

from skysentry.logs import redact


class Cause(StrEnum):
    REFUSED = "connection refused"
    TIMED_OUT = "timed out"
    UNKNOWN_HOST = "unknown host"
    NOT_FOUND = "not found"
    UNAUTHORISED = "unauthorised"
    UNSUPPORTED_TRANSPORT = "unsupported transport"
    NO_FRAMES = "no decodable video"
    DEVICE = "device unavailable"


HINTS = {
    Cause.REFUSED: "nothing listens at that address and port: is the camera (or its RTSP server) up?",
    Cause.TIMED_OUT: "no answer: check the address, the network path and firewalls",
    Cause.UNKNOWN_HOST: "the host name does not resolve: check the address",
    Cause.NOT_FOUND: "the server is up but has no stream at that path (yet): check the path; retrying",
    Cause.UNAUTHORISED: "the camera refused the credentials (or needs some): set them in the URL, from the "
                        "environment (SKYSENTRY_CAMERA__SOURCE)",
    Cause.UNSUPPORTED_TRANSPORT: "the camera does not offer RTP over this transport: set camera.rtsp_transport "
                                 "(SKYSENTRY_CAMERA__RTSP_TRANSPORT=udp or tcp)",
    Cause.NO_FRAMES: "the server answers but no video could be decoded from the stream",
    Cause.DEVICE: "check that the camera is connected and not used by another program (ls /dev/video*)",
}


@dataclass(frozen=True)
class Diagnosis:
    cause: Cause
    detail: str = ""

    def message(self, url: str) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{redact(url)}: {self.cause.value}{detail}; {HINTS[self.cause]}"


def diagnose(url: str, *, transport: str = "tcp", timeout_s: float = 3.0) -> Diagnosis:
    """Ask the camera at ``url`` (rtsp://, http(s)://) why it gives no video."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    default_port = {"rtsp": 554, "http": 80, "https": 443}.get(scheme)
    if default_port is None:
        return Diagnosis(Cause.NO_FRAMES, f"scheme {scheme!r} is not probed")
    try:
        port = parts.port or default_port
    except ValueError:
        return Diagnosis(Cause.UNKNOWN_HOST, "the port is not a number")
    if scheme != "rtsp":
        return _diagnose_http(url, timeout_s)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            return _RtspProbe(sock, url, transport).run()
    except ConnectionRefusedError:
        return Diagnosis(Cause.REFUSED)
    except socket.gaierror:
        return Diagnosis(Cause.UNKNOWN_HOST)
    except (TimeoutError, socket.timeout):
        return Diagnosis(Cause.TIMED_OUT)
    except OSError as exc:
        return Diagnosis(Cause.REFUSED if "refused" in str(exc).lower() else Cause.TIMED_OUT, exc.strerror or "")


def _diagnose_http(url: str, timeout_s: float) -> Diagnosis:
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as resp:
            status = resp.status_code
    except httpx.ConnectError as exc:
        text = str(exc).lower()
        if "refused" in text:
            return Diagnosis(Cause.REFUSED)
        if "name" in text or "resolution" in text:
            return Diagnosis(Cause.UNKNOWN_HOST)
        return Diagnosis(Cause.TIMED_OUT, redact(str(exc)))
    except httpx.TimeoutException:
        return Diagnosis(Cause.TIMED_OUT)
    except httpx.HTTPError as exc:
        return Diagnosis(Cause.NO_FRAMES, redact(str(exc)))
    if status in (401, 403):
        return Diagnosis(Cause.UNAUTHORISED, f"HTTP {status}")
    if status == 404:
        return Diagnosis(Cause.NOT_FOUND, "HTTP 404")
    return Diagnosis(Cause.NO_FRAMES, f"HTTP {status}")


def describe(url: str, timeout_s: float = 2.0) -> int:
    """The RTSP status of a DESCRIBE of ``url`` (200: the stream is announced); 0 when the
    server cannot be reached."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 554), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            return _RtspProbe(sock, url, "udp").describe()[0]
    except OSError:
        return 0


class _RtspProbe:
    """DESCRIBE then SETUP on one connection, answering an auth challenge once."""

    def __init__(self, sock: socket.socket, url: str, transport: str) -> None:
        parts = urlsplit(url)
        self.sock, self.transport = sock, transport
        self.user, self.password = unquote(parts.username or ""), unquote(parts.password or "")
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))  # no credentials on the wire
        self.cseq = 0
        self.challenge = ""
        self._buf = b""

    def describe(self) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = self.request("DESCRIBE", self.url, {"Accept": "application/sdp"})
        if status == 401 and self.user:  # answer the challenge once, as a client would
            self.challenge = headers.get("www-authenticate", "")
            status, headers, body = self.request("DESCRIBE", self.url, {"Accept": "application/sdp"})
        return status, headers, body

    def run(self) -> Diagnosis:
        status, headers, body = self.describe()
        if status in (401, 403):
            return Diagnosis(Cause.UNAUTHORISED, f"RTSP {status}" + ("" if self.user else ", no credentials given"))
        if status == 404:
            return Diagnosis(Cause.NOT_FOUND, "RTSP 404")
        if status != 200:
            return Diagnosis(Cause.NO_FRAMES, f"DESCRIBE answered RTSP {status}" if status else "the server does not speak RTSP")
        control = _video_control(body.decode("utf-8", "replace"))
        if "://" in control:
            track = control
        elif control and control != "*":
            track = self.url.rstrip("/") + "/" + control
        else:
            track = self.url
        spec = "RTP/AVP/TCP;unicast;interleaved=0-1" if self.transport == "tcp" else "RTP/AVP;unicast;client_port=50000-50001"
        status, headers, _ = self.request("SETUP", track, {"Transport": spec})
        if status == 461:
            return Diagnosis(Cause.UNSUPPORTED_TRANSPORT, f"RTSP 461 for RTP over {self.transport.upper()}")
        if status in (401, 403):
            return Diagnosis(Cause.UNAUTHORISED, f"RTSP {status} on SETUP")
        if status == 200 and "session" in headers:
            self.request("TEARDOWN", self.url, {"Session": headers["session"].split(";")[0]})
        return Diagnosis(Cause.NO_FRAMES, f"DESCRIBE and SETUP answered; SETUP RTSP {status}")

    def request(self, method: str, uri: str, extra: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        self.cseq += 1
        lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {self.cseq}", "User-Agent: skysentry-probe"]
        lines += [f"{k}: {v}" for k, v in extra.items()]
        if self.challenge:
            lines.append(f"Authorization: {_authorization(self.challenge, method, uri, self.user, self.password)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        match = re.match(r"RTSP/\d\.\d (\d{3})", head[0])
        if not match:
            return 0, {}, b""
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
        body = self._read_exact(int(headers.get("content-length", "0") or 0))
        return int(match.group(1)), headers, body

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionResetError("the server closed the connection")
            self._buf += chunk
        head, _, self._buf = self._buf.partition(marker)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


def _video_control(sdp: str) -> str:
    """The ``a=control`` of the first video media section of an SDP ("" when there is none)."""
    in_video = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        elif in_video and line.startswith("a=control:"):
            return line.removeprefix("a=control:").strip()
    return ""


def _authorization(challenge: str, method: str, uri: str, user: str, password: str) -> str:
    """The Authorization header answering a Basic or Digest (RFC 2617, MD5, no qop) challenge."""
    import base64

    if challenge.lower().startswith("digest"):
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge[len("digest"):]))
        realm, nonce = params.get("realm", ""), params.get("nonce", "")
        ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
        response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
        return f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", response="{response}"'
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
