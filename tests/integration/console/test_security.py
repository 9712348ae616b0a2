"""Each refusal of the console (issue 15 item 4), over HTTP against the real app under uvicorn:
with credentials every page redirects to the login and every API call and event stream answers
401 without a session or the bearer token; a write with a session but no (or a wrong) CSRF
token is 403, and so is a write from another origin; evidence needs a valid signature or a
session. On loopback without credentials the pages are open, but writes still need the page's
CSRF token and a foreign Host name is refused (DNS rebinding)."""

from __future__ import annotations

import time

import httpx
import pytest

from alerting.evidence import EvidenceStore, signed_url
from console.auth import COOKIE, Credentials, hash_password

pytestmark = pytest.mark.integration

TOKEN = "console-test-token-5b1f0c2a9e"
PASSWORD = "correct horse battery staple"
KEY = "0190aaaa/det-1/snapshot.jpg"
JPEG = b"\xff\xd8\xff-stored-snapshot"


@pytest.fixture
def secured(make_settings, console_server):
    settings = make_settings()
    EvidenceStore.of(settings.evidence).put(KEY, JPEG)
    users = f"ana:{hash_password(PASSWORD, iterations=100_000)}"
    return console_server(settings, Credentials.of(TOKEN, users))


async def test_without_credentials_nothing_is_served_but_the_login(secured, kit):
    async with httpx.AsyncClient(base_url=secured.url, timeout=10, follow_redirects=False) as anon:
        for path in ("/api/alerts", "/api/wall", "/api/silences", "/api/health", "/frames/cam-1.jpg", "/events"):
            r = await anon.get(path)
            assert r.status_code == 401, (path, r.status_code)
            assert r.headers["www-authenticate"].startswith("Bearer")
        for path in ("/", "/alerts", "/silences", "/health"):
            r = await anon.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
        r = await anon.post("/api/silences", json={"matchers": "source=cam-1", "duration": "1h"})
        assert r.status_code == 401
        assert (await anon.get("/api/alerts", headers={"Authorization": "Bearer wrong-token-0000000"})).status_code == 401
        login = await anon.get("/login")
        assert login.status_code == 200 and 'id="login"' in login.text
        assert all(f'name="{n}"' in login.text for n in ("token", "username", "password"))
        wrong = await anon.post("/login", data={"username": "ana", "password": "nope", "next": "/"})
        assert wrong.status_code == 401 and COOKIE not in wrong.headers.get("set-cookie", "")
        unknown = await anon.post("/login", data={"username": "bob", "password": PASSWORD, "next": "/"})
        assert unknown.status_code == 401
        # evidence: only by a valid signature (no session here)
        exp = int(time.time()) + 60
        assert (await anon.get(signed_url(secured.url, kit.secret, KEY, exp))).content == JPEG
        assert (await anon.get(signed_url(secured.url, "not-the-secret", KEY, exp))).status_code == 403
        assert (await anon.get(f"/evidence/{KEY}")).status_code == 403
        assert (await anon.get(signed_url(secured.url, kit.secret, KEY, int(time.time()) - 5))).status_code == 403


async def test_the_bearer_token_reads_and_writes_but_not_from_another_origin(secured):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=secured.url, timeout=10, headers=auth) as http:
        assert (await http.get("/api/alerts")).status_code == 200
        assert (await http.get(f"/evidence/{KEY}")).content == JPEG  # an authenticated client, no signature
        r = await http.post("/api/silences", json={"matchers": "source=cam-3", "duration": "10m"})
        assert r.status_code == 201, r.text  # no CSRF token needed: a browser never sends this header by itself
        foreign = await http.post("/api/silences", json={"matchers": "source=cam-4", "duration": "10m"},
                                  headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403
        assert [s["matchers"] for s in (await http.get("/api/silences")).json()["silences"]] == [["source=cam-3"]]


async def test_a_session_needs_its_csrf_token_and_its_own_origin_for_every_write(secured, kit):
    async with httpx.AsyncClient(base_url=secured.url, timeout=10, follow_redirects=False) as http:
        r = await http.post("/login", data={"username": "ana", "password": PASSWORD, "next": "/silences"})
        assert r.status_code == 303 and r.headers["location"] == "/silences"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        page = await http.get("/silences")
        assert page.status_code == 200 and 'id="new-silence"' in page.text and 'id="silences"' in page.text
        csrf = kit.csrf_of(page.text)
        body = {"matchers": "source=cam-5, site=north", "duration": "30m", "comment": "maintenance"}

        assert (await http.post("/api/silences", json=body)).status_code == 403  # no token
        assert (await http.post("/api/silences", json=body, headers={"X-CSRF-Token": "x" + csrf})).status_code == 403
        cross = await http.post("/api/silences", json=body, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
        assert cross.status_code == 403 and "cross-origin" in cross.json()["error"]
        site = await http.post("/api/silences", json=body, headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"})
        assert site.status_code == 403
        assert (await http.get("/api/silences")).json()["silences"] == []  # none of those wrote anything

        ok = await http.post("/api/silences", json=body, headers={"X-CSRF-Token": csrf, "Origin": secured.url})
        assert ok.status_code == 201, ok.text
        s = ok.json()
        assert s["matchers"] == ["source=cam-5", "site=north"] and s["created_by"] == "ana"
        assert (await http.delete(f"/api/silences/{s['id']}")).status_code == 403
        assert (await http.delete(f"/api/silences/{s['id']}", headers={"X-CSRF-Token": csrf})).status_code == 200
        ack = await http.post("/api/alerts/no-such-alert/ack", json={})
        assert ack.status_code == 403  # the CSRF check comes before anything is looked up
        assert (await http.get(f"/evidence/{KEY}")).content == JPEG  # a session sees evidence without a link
        bad = await http.post("/api/silences", json={"matchers": "source cam", "duration": "1h"},
                              headers={"X-CSRF-Token": csrf})
        assert bad.status_code == 400 and "name=value" in bad.json()["error"]

        out = await http.post("/logout", data={"csrf": csrf})
        assert out.status_code == 303
        http.cookies.clear()
        assert (await http.get("/api/alerts")).status_code == 401


async def test_the_token_logs_in_through_the_form(secured):
    async with httpx.AsyncClient(base_url=secured.url, timeout=10, follow_redirects=False) as http:
        r = await http.post("/login", data={"token": TOKEN, "next": "//evil.example/"})
        assert r.status_code == 303 and r.headers["location"] == "/"  # never redirected off the site
        assert (await http.get("/api/alerts")).status_code == 200
        assert (await http.get("/")).status_code == 200


async def test_open_mode_on_loopback_still_guards_writes_and_the_host_name(make_settings, console_server, kit):
    settings = make_settings()
    EvidenceStore.of(settings.evidence).put(KEY, JPEG)
    server = console_server(settings)
    async with httpx.AsyncClient(base_url=server.url, timeout=10, follow_redirects=False) as http:
        assert (await http.get("/api/alerts")).status_code == 200  # a local operator reads without logging in
        assert (await http.get("/login")).headers["location"] == "/"
        body = {"matchers": "source=cam-6", "duration": "5m"}
        assert (await http.post("/api/silences", json=body)).status_code == 403  # no session, no token
        assert (await http.get(f"/evidence/{KEY}")).status_code == 403  # a bare request: no signature, no session
        csrf = await kit.open_session(http, "/")
        cross = await http.post("/api/silences", json=body, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
        assert cross.status_code == 403
        assert (await http.post("/api/silences", json=body, headers={"X-CSRF-Token": csrf})).status_code == 201
        assert (await http.get(f"/evidence/{KEY}")).content == JPEG  # the page's session
        for path in ("/", "/api/alerts"):
            rebound = await http.get(path, headers={"Host": "evil.example"})
            assert rebound.status_code == 403, path
        page = await http.get("/alerts")
        assert page.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in page.headers[
            "content-security-policy"] and page.headers["referrer-policy"] == "same-origin"
