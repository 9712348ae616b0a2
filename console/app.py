"""The console's web app: ``GET /evidence/<alert>/<detection>/<file>?exp=<unix s>&sig=<hex>``
serves one stored evidence file (alerting/evidence.py) when the signature is ours and has not
expired: 403 otherwise (a tampered, expired or missing signature, or no secret configured;
the answer never says which), 404 for a well-signed link to a file that is not (or no longer)
stored. ``GET /healthz`` answers 200 while the app runs.
"""

from __future__ import annotations

import logging
import time

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from alerting.evidence import FILES, EvidenceSettings, EvidenceStore, check_key, verify

log = logging.getLogger(__name__)


def build_app(settings: EvidenceSettings, store: EvidenceStore | None = None) -> Starlette:
    store = store or EvidenceStore.of(settings)
    secret = settings.secret.get_secret_value() if settings.secret is not None else None
    if secret is None:
        log.warning("no evidence secret (SKYSENTRY_EVIDENCE__SECRET): every evidence link is refused")

    async def evidence(request: Request) -> Response:
        key = request.path_params["key"]
        try:
            check_key(key)
        except ValueError:
            return PlainTextResponse("not found", status_code=404)
        q = request.query_params
        if secret is None or not verify(secret, key, q.get("exp"), q.get("sig")):
            return PlainTextResponse("forbidden: the link is invalid or has expired", status_code=403)
        name = key.rsplit("/", 1)[-1]
        if name not in FILES:
            return PlainTextResponse("not found", status_code=404)
        data = await run_in_threadpool(store.get, key)
        if data is None:
            return PlainTextResponse("not found", status_code=404)
        left = max(0, int(q["exp"]) - int(time.time()))
        return Response(data, media_type=FILES[name][0],
                        headers={"Cache-Control": f"private, max-age={left}", "X-Content-Type-Options": "nosniff"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/evidence/{key:path}", evidence, methods=["GET", "HEAD"]),
                             Route("/healthz", healthz, methods=["GET"])])
