"""The operator console (issue 15 items 3-4): a Starlette app under uvicorn, ``skysentry console``.

A live wall (latest frame and boxes per camera, last minute of scores per microphone, read
from Kafka from the end), alerts with their evidence, lineage and timeline (acknowledge,
silence), silences, and the health of the services; loopback by default, credentials beyond
it (docs/console.md). It may import the kernel and alerting's public modules, never torch
(docs/architecture.md §1); it writes only silences and acknowledgements.
"""
