"""A local Kafka cluster: three KRaft nodes on loopback, each a broker and a controller (a
three-voter quorum), for ``skysentry stack up --brokers 3`` and the cluster drills.

Topics on it get replication factor 3 and ``min.insync.replicas=2`` (deploy/local/
kafka-cluster.properties); SkySentry's producers already write with ``acks=all`` and
idempotence, so one node can die, restart or stay down with nothing lost or refused.

It lives in the stack's state dir beside Redis, recorded under ``cluster`` in stack.json::

    cluster/node-N.properties   rendered from deploy/local/kafka-cluster.properties
    cluster/node-N/             node N's log dir
    cluster/node-N.log          node N's output, appended across restarts

:mod:`deploy.local.stack` calls :func:`ensure` / :func:`stop_all` from ``up`` / ``down``; the
drills call :func:`kill_node`, :func:`start_node` and :func:`stop_node` on single nodes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import string
import time
from pathlib import Path
from typing import Any

from deploy.local import stack as _stack

TEMPLATE = _stack.HERE / "kafka-cluster.properties"


def ensure(state: Path, doc: dict[str, Any], brokers: int, timeout_s: float) -> None:
    """Start the nodes of this state dir's cluster that do not run (allocating ports and a
    cluster id the first time) and wait until every node answers as a broker."""
    if doc.get("kafka", {}).get("pid") and _stack._kafka_alive(state, doc["kafka"]["pid"]):
        raise _stack.StackError(f"{state} runs a single Kafka node; `skysentry stack down --state-dir {state}` "
                                "first, then `up --brokers N`")
    entry = doc.setdefault("cluster", {})
    nodes: list[dict[str, Any]] = entry.setdefault("nodes", [])
    if nodes and len(nodes) != brokers:
        raise _stack.StackError(f"{state} holds a cluster of {len(nodes)} nodes, not {brokers}; remove the state "
                                "dir (its topics go with it) or ask for the same number")
    if not nodes:
        taken = {doc.get("redis", {}).get("port") or 0}
        for node_id in range(1, brokers + 1):
            port = _stack._free_port(taken)
            taken.add(port)
            controller = _stack._free_port(taken)
            taken.add(controller)
            nodes.append({"id": node_id, "port": port, "controller_port": controller, "pid": None})
        entry["cluster_id"] = _stack._new_cluster_id()
        _stack._save(state, doc)
    for node in nodes:
        if not alive(state, node):
            _spawn(state, doc, node)
    for node in nodes:
        _stack._wait_ready(lambda n=node: _stack._kafka_ready(_stack.HOST, n["port"]), None, timeout_s,
                           f"Kafka node {node['id']}", log_path(state, node["id"]), 0)


def bootstrap(doc: dict[str, Any]) -> str:
    return ",".join(f"{_stack.HOST}:{n['port']}" for n in doc["cluster"]["nodes"])


def node(doc: dict[str, Any], node_id: int) -> dict[str, Any]:
    return next(n for n in doc["cluster"]["nodes"] if n["id"] == node_id)


def alive(state: Path, node: dict[str, Any]) -> bool:
    return _stack._pid_alive(node.get("pid"), ("kafka.Kafka", str(props_path(state, node["id"]))))


def start_node(state_dir: Path, node_id: int, *, wait: bool = True, timeout_s: float = _stack.READY_TIMEOUT_S) -> None:
    """Start node ``node_id`` again (same ports, same data) unless it runs."""
    state = _stack._state_path(state_dir)
    with _stack._locked(state):
        doc = _stack._load(state)
        n = node(doc, node_id)
        if not alive(state, n):
            _spawn(state, doc, n)
    if wait:
        _stack._wait_ready(lambda: _stack._kafka_ready(_stack.HOST, n["port"]), None, timeout_s,
                           f"Kafka node {node_id}", log_path(state, node_id), 0)


def stop_node(state_dir: Path, node_id: int, *, kill: bool = False, grace_s: float = _stack.STOP_GRACE_S) -> None:
    """Stop node ``node_id``: a controlled shutdown (SIGTERM: it hands its leaderships over
    first), or ``kill`` -9."""
    state = _stack._state_path(state_dir, create=False)
    with _stack._locked(state):
        doc = _stack._load(state)
        n = node(doc, node_id)
        if n.get("pid") and kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(n["pid"], signal.SIGKILL)
            _stack._terminate(n["pid"], lambda: alive(state, n), 10.0)  # reaps it; SIGTERM to a dead pid is moot
        elif n.get("pid"):
            _stack._terminate(n["pid"], lambda: alive(state, n), grace_s)
        if n.get("pid"):
            for port in (n["port"], n["controller_port"]):
                _stack._wait_port_free(port, 10.0)
        n["pid"] = None
        _stack._save(state, doc)


def stop_all(state: Path, doc: dict[str, Any], grace_s: float) -> None:
    for n in doc.get("cluster", {}).get("nodes", []):
        if n.get("pid"):
            _stack._terminate(n["pid"], lambda n=n: alive(state, n), grace_s)
            n["pid"] = None
    _stack._save(state, doc)


def props_path(state: Path, node_id: int) -> Path:
    return state / "cluster" / f"node-{node_id}.properties"


def log_path(state: Path, node_id: int) -> Path:
    return state / "cluster" / f"node-{node_id}.log"


def _spawn(state: Path, doc: dict[str, Any], n: dict[str, Any]) -> None:
    nodes = doc["cluster"]["nodes"]
    data = state / "cluster" / f"node-{n['id']}"
    data.mkdir(parents=True, exist_ok=True)
    props = props_path(state, n["id"])
    props.write_text(string.Template(TEMPLATE.read_text()).substitute(
        node_id=n["id"], kafka_port=n["port"], controller_port=n["controller_port"], log_dir=str(data),
        voters=",".join(f"{m['id']}@{_stack.HOST}:{m['controller_port']}" for m in nodes)))
    java, classpath, log = _stack._java(), _stack.kafka_classpath(), log_path(state, n["id"])
    _stack._format_storage(java, classpath, props, doc["cluster"]["cluster_id"], state, log, data)
    cmd = [java, *_stack.KAFKA_JVM_OPTS, f"-Dlog4j.configuration={_stack.LOG4J_PROPERTIES.as_uri()}",
           "-cp", classpath, "kafka.Kafka", str(props)]
    proc = _stack._spawn(cmd, state, log, f"kafka {_stack.KAFKA_VERSION} node {n['id']} on {_stack.HOST}:{n['port']}")
    n.update(pid=proc.pid, started_at=time.time())
    _stack._save(state, doc)
