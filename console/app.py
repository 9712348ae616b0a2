"""The console's web app (Starlette; ``skysentry console`` runs it under uvicorn).

Pages (HTML shells that console/static/console.js fills): ``/`` live wall, ``/alerts``,
``/silences``, ``/health``, ``/login``. JSON API under ``/api/...``; live updates by server-sent
events on ``/events`` (``frame``, ``score``, ``alert``, ``health``); the latest frames at
``/frames/<camera>.jpg``; stored evidence at ``/evidence/<alert>/<detection>/<file>`` by a valid,
unexpired signature (alerting/evidence.py) or to a session; ``/healthz`` for probes. docs/console.md
has the page contract and the API.

Who may do what is console/auth.py; the data behind the pages is console/live.py (Kafka),
console/alerts.py (Redis through the alerting's modules, the alerts topic, the evidence store) and
console/health.py (the services' probes and metrics, consumer lag). The console writes only
silences (alerting/silences.py) and acknowledgements (alerting/acks.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from alerting.acks import AckOutcome, AckStore
from alerting.durations import parse_duration
from alerting.evidence import FILES, EvidenceSettings, EvidenceStore, check_key, verify
from alerting.matchers import MatcherError, parse_all
from alerting.silences import SilenceStore
from alerting.state import AlertState
from console import metrics, pages
from console.alerts import SCOPES, AlertBook, EvidenceLinks, silence_view
from console.auth import (COOKIE, CSRF_HEADER, Credentials, Session, SessionSigner, cross_site, csrf_ok,
                          host_is_loopback, is_loopback)
from console.config import ConsoleServiceSettings
from console.health import HealthMonitor
from console.live import Hub, LiveReader, Wall
from skysentry.metrics import HEALTH

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
KEEPALIVE_S = 15.0
MAX_BODY = 16 * 1024
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # evidence links carry their signature in the query: no referrer leaves the site. Not
    # "no-referrer": with it browsers send "Origin: null" on the page's own POSTs, refused as cross-site
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                                 b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"),
]


@dataclass(frozen=True)
class Identity:
    user: str
    via: str  # "session" | "bearer" | "open" (loopback without credentials, no cookie yet)
    session: Session | None = None


class SilenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    matchers: list[str] | str
    duration: str | float = "1h"
    comment: str = Field("", max_length=1000)


class AlertSilenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: str = "source"
    duration: str | float = "1h"
    comment: str = Field("", max_length=1000)


class AckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field("", max_length=1000)


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _unauthorized() -> JSONResponse:
    metrics.REFUSED.labels("unauthenticated").inc()
    return _error(401, "authentication required: log in at /login or send Authorization: Bearer <token>",
                  **{"WWW-Authenticate": 'Bearer realm="skysentry-console"'})


class Console:
    """Everything one console process holds; :meth:`app` is the ASGI application."""

    def __init__(self, settings: ConsoleServiceSettings, store: EvidenceStore | None = None, *,
                 credentials: Credentials | None = None):
        self.settings = settings
        c = settings.console
        self.credentials = credentials or Credentials.of(c.token.get_secret_value() if c.token else None,
                                                         c.users.get_secret_value() if c.users else None)
        self.open_mode = not self.credentials.configured
        self.signer = SessionSigner(c.session_secret.get_secret_value() if c.session_secret else None)
        self.evidence = settings.evidence
        self.store = store or EvidenceStore.of(settings.evidence)
        self.secret = settings.evidence.secret.get_secret_value() if settings.evidence.secret is not None else None
        self.hub = Hub()
        self.wall = Wall(self.hub, score_window_s=c.score_window, box_hold_s=c.box_hold)
        self.reader = LiveReader(settings.kafka, settings.topics, self.wall, client_id=c.client_id,
                                 max_frame_age_s=c.max_frame_age)
        self.monitor = HealthMonitor(c.services, settings.kafka, self.hub, client_id=f"{c.client_id}-health",
                                     interval_s=c.health_interval, timeout_s=c.probe_timeout, groups=c.lag_groups)
        self.redis: aioredis.Redis | None = None
        self.book: AlertBook | None = None
        self.silences: SilenceStore | None = None
        self.stop = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None  # the one serving, once started
        self._tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------------ lifecycle

    def _connect_redis(self) -> None:
        s, c = self.settings, self.settings.console
        self.redis = aioredis.from_url(s.redis.url.get_secret_value(), decode_responses=True,
                                       socket_connect_timeout=3, socket_timeout=5, health_check_interval=30)
        state = AlertState(self.redis, s.alerting)
        self.silences = SilenceStore(self.redis, s.alerting.key_prefix)
        links = EvidenceLinks(self.evidence, self.store, c.snapshot_link_ttl)
        self.book = AlertBook(state, self.silences, AckStore(self.redis, s.alerting.key_prefix), links,
                              self.wall.lineage, self.hub, recent_max=c.recent_max)

    async def start(self) -> None:
        if self.secret is None:
            log.warning("no evidence secret (SKYSENTRY_EVIDENCE__SECRET): evidence links are refused; pages "
                        "show evidence to sessions only")
        self.loop = asyncio.get_running_loop()
        self._connect_redis()
        c, s = self.settings.console, self.settings
        assert self.book is not None
        self.stop.clear()
        kafka = s.kafka.model_copy(update={"client_id": f"{c.client_id}-alerts"})
        self._tasks = [HEALTH.start_heartbeat(),  # /livez on the metrics port
                       asyncio.create_task(self.reader.run(self.stop), name="console-live"),
                       asyncio.create_task(self.book.poll(self.stop, c.alerts_poll), name="console-alerts"),
                       asyncio.create_task(self.book.follow_topic(kafka, s.topics.alerts, c.history, self.stop),
                                           name="console-alerts-topic"),
                       asyncio.create_task(self.monitor.run(self.stop), name="console-health")]
        log.info("console started", extra={"fields": {
            "mode": "open (loopback, no credentials)" if self.open_mode else "credentials",
            "token": self.credentials.token is not None, "users": sorted(self.credentials.users),
            "services": sorted(c.services), "frames": s.topics.frames, "detections": s.topics.detections,
            "alerts": s.topics.alerts}})

    async def close(self) -> None:
        self.stop.set()
        self.hub.close()
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        await self.start()
        try:
            yield
        finally:
            await self.close()

    # ------------------------------------------------------------------ who is asking

    def identify(self, request: Request) -> Identity | None:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return Identity("token", "bearer") if self.credentials.token_ok(auth[7:].strip()) else None
        session = self.signer.read(request.cookies.get(COOKIE))
        if session is not None and (not session.anonymous or self.open_mode):
            return Identity(session.user, "session", session)
        if self.open_mode:
            return Identity("local", "open")
        return None

    def refuse_write(self, request: Request, who: Identity) -> Response | None:
        """403 unless the write is same-site and carries the session's CSRF token (or the bearer token)."""
        why = cross_site(request.headers, request.url.scheme, request.headers.get("host"))
        if why:
            metrics.REFUSED.labels("cross_origin").inc()
            return _error(403, f"cross-origin write refused ({why})")
        if who.via == "bearer":
            return None
        if not csrf_ok(who.session, request.headers.get(CSRF_HEADER)):
            metrics.REFUSED.labels("csrf").inc()
            return _error(403, "missing or wrong X-CSRF-Token: take it from the page's <meta name=\"csrf-token\">")
        return None

    def _set_cookie(self, response: Response, request: Request, value: str, max_age: int) -> None:
        response.set_cookie(COOKIE, value, max_age=max_age, path="/", httponly=True, samesite="strict",
                            secure=self.settings.console.cookie_secure or request.url.scheme == "https")

    # ------------------------------------------------------------------ pages

    def page(self, render):
        async def handler(request: Request) -> Response:
            who = self.identify(request)
            if who is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
            cookie = None
            session = who.session
            if who.via == "open":  # a local operator without a cookie yet: one for the CSRF token
                session, cookie = self.signer.new("local", self.settings.console.session_ttl, anonymous=True)
            response = HTMLResponse(render(csrf=session.csrf if session else "", user=who.user,
                                           open_mode=self.open_mode),
                                    headers={"Cache-Control": "no-store"})
            if cookie:
                self._set_cookie(response, request, cookie, int(self.settings.console.session_ttl))
            return response

        return handler

    async def login_page(self, request: Request) -> Response:
        if self.open_mode:
            return RedirectResponse("/", status_code=303)
        return self._login(request.query_params.get("next", "/"), None, 200)

    def _login(self, next_path: str, error: str | None, status: int) -> Response:
        html = pages.login(token=self.credentials.token is not None, users=bool(self.credentials.users),
                           next_path=_local(next_path), error=error)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    async def login(self, request: Request) -> Response:
        if self.open_mode:
            return RedirectResponse("/", status_code=303)
        why = cross_site(request.headers, request.url.scheme, request.headers.get("host"))
        if why:
            return _error(403, f"cross-origin login refused ({why})")
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(413, "too large")
        form = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        next_path = _local(form.get("next", "/"))
        user = None
        if form.get("token"):
            user = "token" if self.credentials.token_ok(form["token"]) else None
        elif form.get("username") and form.get("password"):
            name = form["username"]
            if await run_in_threadpool(self.credentials.password_ok, name, form["password"]):
                user = name
        if user is None:
            metrics.REFUSED.labels("login").inc()
            await asyncio.sleep(1.0)  # slows guessing down
            # what was typed is not logged: a password typed into the user field would end up in the log
            log.warning("console login refused", extra={"fields": {"with": "token" if form.get("token") else "password"}})
            return self._login(next_path, "Wrong user, password or token.", 401)
        _, cookie = self.signer.new(user, self.settings.console.session_ttl)
        response = RedirectResponse(next_path, status_code=303)
        self._set_cookie(response, request, cookie, int(self.settings.console.session_ttl))
        log.info("console login", extra={"fields": {"user": user}})
        return response

    async def logout(self, request: Request) -> Response:
        who = self.identify(request)
        body = await request.body()
        form = dict(parse_qsl(body.decode(errors="replace")[:MAX_BODY]))
        if who is not None and who.session is not None:
            why = cross_site(request.headers, request.url.scheme, request.headers.get("host"))
            presented = request.headers.get(CSRF_HEADER) or form.get("csrf")
            if why or not csrf_ok(who.session, presented):
                return _error(403, "logout needs the page's CSRF token")
        response = RedirectResponse("/login" if not self.open_mode else "/", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # ------------------------------------------------------------------ API plumbing

    def api(self, handler, *, write: bool = False):
        async def endpoint(request: Request) -> Response:
            who = self.identify(request)
            if who is None:
                return _unauthorized()
            if write and (refused := self.refuse_write(request, who)):
                return refused
            try:
                return await handler(request, who)
            except (RedisError, OSError) as exc:
                return _error(503, f"Redis not reachable: {type(exc).__name__}")

        return endpoint

    async def _json(self, request: Request, model: type[BaseModel]):
        body = await request.body()
        if len(body) > MAX_BODY:
            raise ValueError("request body too large")
        try:
            return model.model_validate_json(body or b"{}")
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ValueError(f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}") from None

    # ------------------------------------------------------------------ API

    async def api_wall(self, request: Request, who: Identity) -> Response:
        return JSONResponse(self.wall.view())

    async def api_alerts(self, request: Request, who: Identity) -> Response:
        assert self.book is not None
        return JSONResponse({"alerts": self.book.list(), "redis_error": self.book.redis_error,
                             "topic_connected": self.book.topic_connected})

    async def api_alert(self, request: Request, who: Identity) -> Response:
        assert self.book is not None
        card = self.book.find(request.path_params["alert_id"])
        return JSONResponse(card) if card else _error(404, "no such alert (firing or recent)")

    async def api_ack(self, request: Request, who: Identity) -> Response:
        assert self.book is not None
        try:
            body = await self._json(request, AckRequest)
        except ValueError as exc:
            return _error(400, str(exc))
        alert_id = request.path_params["alert_id"]
        outcome, card = await self.book.acknowledge(alert_id, by=who.user, comment=body.comment)
        if outcome is AckOutcome.NOT_FOUND:
            return _error(404, "no such firing alert (it may have resolved and fired anew)")
        if outcome is AckOutcome.NOT_FIRING:
            return _error(409, "the alert has resolved: nothing to acknowledge")
        metrics.WRITES.labels("ack").inc()
        log.info("alert acknowledged", extra={"fields": {"alert_id": alert_id, "by": who.user,
                                                         "outcome": outcome.value}})
        return JSONResponse({"outcome": outcome.value, "alert": card})

    async def api_alert_silence(self, request: Request, who: Identity) -> Response:
        assert self.book is not None
        try:
            body = await self._json(request, AlertSilenceRequest)
            duration = parse_duration(body.duration)
            if body.scope not in SCOPES:
                raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
            silence = await self.book.silence(request.path_params["alert_id"], scope=body.scope, duration_s=duration,
                                              by=who.user, comment=body.comment)
        except ValueError as exc:
            return _error(400, str(exc))
        if silence is None:
            return _error(404, "no such alert (firing or recent)")
        metrics.WRITES.labels("silence").inc()
        log.info("silence added", extra={"fields": {"id": silence.id, "matchers": silence.matchers, "by": who.user}})
        return JSONResponse(silence_view(silence), status_code=201)

    async def api_silences(self, request: Request, who: Identity) -> Response:
        assert self.silences is not None
        return JSONResponse({"silences": [silence_view(s) for s in await self.silences.list()]})

    async def api_silence_add(self, request: Request, who: Identity) -> Response:
        assert self.silences is not None
        try:
            body = await self._json(request, SilenceRequest)
            matchers = body.matchers if isinstance(body.matchers, list) else body.matchers.split(",")
            matchers = [m.strip() for m in matchers if m.strip()]
            parse_all(matchers)
            silence = await self.silences.add(matchers, duration_s=parse_duration(body.duration), created_by=who.user,
                                              comment=body.comment)
        except (ValueError, MatcherError) as exc:
            return _error(400, str(exc))
        metrics.WRITES.labels("silence").inc()
        log.info("silence added", extra={"fields": {"id": silence.id, "matchers": silence.matchers, "by": who.user}})
        if self.book is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.book.refresh()
        return JSONResponse(silence_view(silence), status_code=201)

    async def api_silence_expire(self, request: Request, who: Identity) -> Response:
        assert self.silences is not None
        sid = request.path_params["silence_id"]
        if not await self.silences.expire(sid):
            return _error(404, "no active silence with that id")
        metrics.WRITES.labels("expire").inc()
        log.info("silence expired", extra={"fields": {"id": sid, "by": who.user}})
        if self.book is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.book.refresh()
        return JSONResponse({"expired": sid})

    async def api_health(self, request: Request, who: Identity) -> Response:
        view = self.monitor.view()
        view["console"] = {"kafka_connected": self.reader.connected, "partitions": self.reader.partitions,
                           "frames_read": self.reader.frames_read,
                           "frames_skipped": self.reader.frames_skipped, "invalid_records": self.reader.invalid,
                           "browsers": len(self.hub.boxes),
                           "redis_error": self.book.redis_error if self.book else "not started"}
        return JSONResponse(view)

    async def frame(self, request: Request, who: Identity) -> Response:
        seq = request.query_params.get("seq")
        if seq is not None and not seq.isdigit():
            return _error(400, "seq must be a number")
        f = self.wall.frame(request.path_params["source"], int(seq) if seq is not None else None)
        if f is None:
            return _error(404, "no such frame held (the console keeps the latest few per camera)")
        cache = "private, max-age=60, immutable" if seq is not None else "no-store"
        return Response(f.jpeg, media_type="image/jpeg", headers={"Cache-Control": cache, "X-Frame-Seq": str(f.seq)})

    # ------------------------------------------------------------------ evidence

    async def evidence_file(self, request: Request) -> Response:
        key = request.path_params["key"]
        try:
            check_key(key)
        except ValueError:
            return PlainTextResponse("not found", status_code=404)
        q = request.query_params
        signed = self.secret is not None and verify(self.secret, key, q.get("exp"), q.get("sig"))
        if not signed:
            who = self.identify(request) if "sig" not in q and "exp" not in q else None
            if who is None or who.via == "open":  # a session or the bearer token, never a bare request
                return PlainTextResponse("forbidden: the link is invalid or has expired", status_code=403)
        name = key.rsplit("/", 1)[-1]
        if name not in FILES:
            return PlainTextResponse("not found", status_code=404)
        data = await run_in_threadpool(self.store.get, key)
        if data is None:
            return PlainTextResponse("not found", status_code=404)
        left = max(0, int(q["exp"]) - int(time.time())) if signed else 300
        return Response(data, media_type=FILES[name][0], headers={"Cache-Control": f"private, max-age={left}"})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    # ------------------------------------------------------------------ events

    async def events(self, scope, receive, send) -> None:
        """``GET /events[?kinds=frame,score]``: server-sent events, newest per key (see console/live.py)."""
        request = Request(scope, receive)
        who = self.identify(request)
        if who is None:
            await _unauthorized()(scope, receive, send)
            return
        kinds = frozenset(k for k in request.query_params.get("kinds", "").split(",") if k) or Hub.KINDS
        box = self.hub.subscribe(kinds)
        interval = 1.0 / self.settings.console.max_updates_per_s
        gone = asyncio.Event()

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.create_task(watch_disconnect())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-store"),
                (b"x-accel-buffering", b"no")]})
            await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
            while not gone.is_set() and not box.closed:
                ready = asyncio.create_task(box.ready.wait())
                ended = asyncio.create_task(gone.wait())
                done, _ = await asyncio.wait({ready, ended}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED)
                ready.cancel()
                ended.cancel()
                if gone.is_set() or box.closed:
                    break
                chunk = b"".join(box.take()) if ready in done else b": keepalive\n\n"
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await asyncio.sleep(interval)  # at most max_updates_per_s per key; newer events coalesce meanwhile
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the browser went away mid-write
        finally:
            self.hub.unsubscribe(box)
            watcher.cancel()

    # ------------------------------------------------------------------ the app

    def app(self, *, lifespan: bool = True) -> Starlette:
        routes = [
            Route("/", self.page(pages.wall)),
            Route("/alerts", self.page(pages.alerts)),
            Route("/silences", self.page(pages.silences)),
            Route("/health", self.page(pages.health)),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/api/wall", self.api(self.api_wall)),
            Route("/api/alerts", self.api(self.api_alerts)),
            Route("/api/alerts/{alert_id}", self.api(self.api_alert)),
            Route("/api/alerts/{alert_id}/ack", self.api(self.api_ack, write=True), methods=["POST"]),
            Route("/api/alerts/{alert_id}/silence", self.api(self.api_alert_silence, write=True), methods=["POST"]),
            Route("/api/silences", self.api(self.api_silences), methods=["GET"]),
            Route("/api/silences", self.api(self.api_silence_add, write=True), methods=["POST"]),
            Route("/api/silences/{silence_id}", self.api(self.api_silence_expire, write=True), methods=["DELETE"]),
            Route("/api/health", self.api(self.api_health)),
            Route("/frames/{source}.jpg", self.api(self.frame)),
            Route("/events", _Asgi(self.events)),
            Route("/evidence/{key:path}", self.evidence_file, methods=["GET", "HEAD"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
        app = Starlette(routes=routes, lifespan=self.lifespan if lifespan else None)
        app.add_middleware(_Guard, open_mode=self.open_mode)
        return app


class _Asgi:
    """A plain ASGI endpoint for a Route (Starlette calls a class instance as an ASGI app)."""

    def __init__(self, fn):
        self.fn = fn

    async def __call__(self, scope, receive, send) -> None:
        await self.fn(scope, receive, send)


class _Guard:
    """Security headers on every response; in open mode, only loopback ``Host`` names (a
    DNS-rebinding page cannot reach the local console through its own domain)."""

    OPEN_PATHS = ("/healthz", "/evidence/", "/static/")

    def __init__(self, app, *, open_mode: bool):
        self.app = app
        self.open_mode = open_mode

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.open_mode and not scope["path"].startswith(self.OPEN_PATHS):
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
            if not host_is_loopback(host):
                metrics.REFUSED.labels("host").inc()
                await PlainTextResponse("forbidden: this console answers only on a loopback address "
                                        "(127.0.0.1, localhost)", status_code=403)(scope, receive, send)
                return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in SECURITY_HEADERS if k not in have]
            await send(message)

        await self.app(scope, receive, with_headers)


def _local(path: str) -> str:
    """A redirect target on this site only (``/x``, never ``//host`` or ``http://…``)."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def build_app(settings: ConsoleServiceSettings | EvidenceSettings, store: EvidenceStore | None = None, *,
              credentials: Credentials | None = None, lifespan: bool = True) -> Starlette:
    """The console app. Given only the ``evidence:`` section (as the alerting's evidence tests do),
    the rest of the settings are the defaults and the environment's."""
    if isinstance(settings, EvidenceSettings):
        settings = ConsoleServiceSettings(evidence=settings)
    return Console(settings, store, credentials=credentials).app(lifespan=lifespan)


__all__ = ["Console", "build_app", "is_loopback"]
