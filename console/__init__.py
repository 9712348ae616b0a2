"""The operator console (issue 15 item 3): a Starlette app under uvicorn, ``skysentry console``.

So far it serves the alert evidence the alerting stores (``/evidence/<key>?exp=…&sig=…``,
only with a valid, unexpired signature) and a health route. It may import the kernel and
alerting's public modules (docs/architecture.md §1).
"""
