"""The console's credentials and request checks (console/auth.py): password hashes, user lists,
signed session cookies, CSRF tokens, origins and what counts as loopback."""

from __future__ import annotations

import time

import pytest

from console.auth import (MIN_ITERATIONS, Credentials, CredentialsError, ExposureError, SessionSigner, check_exposure,
                          check_hash, cross_site, csrf_ok, hash_password, host_is_loopback, is_loopback,
                          parse_users, verify_password)

FAST = MIN_ITERATIONS


def test_a_password_hash_verifies_only_its_password_and_is_salted():
    h = hash_password("s3cret", iterations=FAST)
    assert h.startswith(f"pbkdf2_sha256${FAST}$") and verify_password("s3cret", h)
    assert not verify_password("s3cret ", h) and not verify_password("", h)
    assert hash_password("s3cret", iterations=FAST) != h  # a new salt each time
    assert hash_password("s3cret", iterations=FAST, salt=b"0123456789abcdef") == hash_password(
        "s3cret", iterations=FAST, salt=b"0123456789abcdef")
    assert hash_password("x").split("$")[1] == "600000"  # the default work factor


@pytest.mark.parametrize("bad", ["", "s3cret", "md5$1$a$b", f"pbkdf2_sha256$1000$c2FsdA$aGFzaA",
                                 "pbkdf2_sha256$abc$c2FsdA$aGFzaA", "pbkdf2_sha256$200000$c2FsdA"])
def test_malformed_or_weak_hashes_are_refused(bad):
    with pytest.raises(CredentialsError):
        check_hash(bad)
    assert not verify_password("s3cret", bad)
    with pytest.raises(CredentialsError):
        hash_password("", iterations=FAST) if bad == "" else hash_password("x", iterations=1000)


def test_user_lists_are_read_and_bad_entries_say_what_to_write():
    a, b = hash_password("pa", iterations=FAST), hash_password("pb", iterations=FAST)
    assert parse_users(f"ana:{a},bob:{b}") == {"ana": a, "bob": b}
    assert parse_users(f"  ana:{a}\n\nbob:{b}\n") == {"ana": a, "bob": b}
    assert parse_users("") == {} and parse_users(None) == {}
    with pytest.raises(CredentialsError, match="name:pbkdf2_sha256"):
        parse_users(a)  # no name
    with pytest.raises(CredentialsError, match="ana"):
        parse_users("ana:plaintext-password")
    with pytest.raises(CredentialsError, match="twice"):
        parse_users(f"ana:{a},ana:{b}")


def test_credentials_check_the_token_and_passwords():
    creds = Credentials.of("a-long-enough-token-1234", f"ana:{hash_password('pw', iterations=FAST)}")
    assert creds.configured and creds.token_ok("a-long-enough-token-1234")
    assert not creds.token_ok("a-long-enough-token-1235") and not creds.token_ok(None) and not creds.token_ok("")
    assert creds.password_ok("ana", "pw") and not creds.password_ok("ana", "pW")
    assert not creds.password_ok("bob", "pw")  # unknown user: same work, refused
    assert not Credentials.of(None, None).configured and not Credentials.of("", "").configured
    with pytest.raises(CredentialsError, match="16 characters"):
        Credentials.of("short", None)


def test_sessions_are_signed_expire_and_carry_a_csrf_token():
    signer = SessionSigner("k1")
    session, cookie = signer.new("ana", 60)
    assert signer.read(cookie) == session and len(session.csrf) >= 24 and not session.anonymous
    assert SessionSigner("k2").read(cookie) is None  # another key
    version, payload, mac = cookie.split(".")
    forged = SessionSigner("k1").new("root", 60)[1].split(".")[1]
    assert signer.read(f"{version}.{forged}.{mac}") is None  # another payload under this signature
    assert signer.read(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")) is None
    assert signer.read(cookie, now=time.time() + 61) is None  # expired
    assert signer.read(None) is None and signer.read("garbage") is None and signer.read("v1.x.y") is None
    other, _ = signer.new("ana", 60)
    assert other.csrf != session.csrf  # one token per session
    assert SessionSigner().read(SessionSigner().new("ana", 60)[1]) is None  # random keys differ per process


def test_csrf_tokens_must_match_the_session():
    session, _ = SessionSigner("k").new("ana", 60)
    assert csrf_ok(session, session.csrf)
    assert not csrf_ok(session, session.csrf + "x") and not csrf_ok(session, None) and not csrf_ok(None, "x")


@pytest.mark.parametrize("headers,scheme,host,refused", [
    ({}, "http", "127.0.0.1:8090", False),  # no Origin: not a browser's cross-site form (CSRF token still needed)
    ({"origin": "http://127.0.0.1:8090"}, "http", "127.0.0.1:8090", False),
    ({"origin": "http://127.0.0.1:8091"}, "http", "127.0.0.1:8090", True),
    ({"origin": "http://evil.example"}, "http", "127.0.0.1:8090", True),
    ({"origin": "null"}, "http", "127.0.0.1:8090", True),
    ({"origin": "https://console.example"}, "https", "console.example", False),
    ({"origin": "https://console.example"}, "http", "console.example", True),  # scheme differs
    ({"origin": "https://console.example", "x-forwarded-host": "console.example", "x-forwarded-proto": "https"},
     "http", "10.0.0.5:8090", False),  # behind a TLS proxy
    ({"sec-fetch-site": "cross-site"}, "http", "127.0.0.1:8090", True),
    ({"sec-fetch-site": "same-origin", "origin": "http://127.0.0.1:8090"}, "http", "127.0.0.1:8090", False),
])
def test_cross_site_requests_are_recognised(headers, scheme, host, refused):
    assert (cross_site(headers, scheme, host) is not None) is refused


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
                                           ("localhost", True), ("0.0.0.0", False), ("::", False),
                                           ("192.168.1.5", False), ("console.example", False), ("", False)])
def test_what_counts_as_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_beyond_loopback_the_console_needs_credentials():
    check_exposure("127.0.0.1", Credentials.of(None, None))
    check_exposure("0.0.0.0", Credentials.of("a-long-enough-token-1234", None))
    with pytest.raises(ExposureError, match="SKYSENTRY_CONSOLE__TOKEN"):
        check_exposure("0.0.0.0", Credentials.of(None, None))


def test_host_headers_naming_loopback():
    assert host_is_loopback("127.0.0.1:8090") and host_is_loopback("localhost") and host_is_loopback("[::1]:8090")
    assert not host_is_loopback("evil.example:8090") and not host_is_loopback(None)
    assert not host_is_loopback("127.0.0.1.evil.example")
