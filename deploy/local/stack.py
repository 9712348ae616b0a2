"""The local stack (DESIGN §8): a real Apache Kafka broker and a real Redis server on loopback.

Kafka 3.9.1 runs in KRaft mode as one node (broker and controller in one JVM) on the machine's
Java, from jars that Maven fetches once from Maven Central through the pinned
``deploy/local/pom.xml``. Redis is Debian's ``redis-server``. Both run detached (their own
session), so they outlive the ``skysentry stack up`` that started them; ``down`` stops them.

Everything one stack owns lives in its *state dir* (default ``.skysentry/stack`` under the
current directory)::

    stack.json         pids, ports and the Kafka cluster id: what ``up``/``down``/``status`` read
    kafka.properties   rendered from deploy/local/kafka.properties
    kafka-data/        the broker's log dir (topics survive restarts of the broker)
    kafka.log          the broker's stdout/stderr, appended across restarts
    redis.log          Redis's log
    appendonlydir/     Redis's append-only file (fsync every second): alert state, dedup and the
                       notification outbox survive a restart or a kill -9 of Redis

The Kafka jars (about 56 MB) are shared by every state dir on the machine, in
``$SKYSENTRY_KAFKA_LIBS`` when set, else ``$XDG_CACHE_HOME/skysentry/kafka-libs-3.9.1``
(``~/.cache/...``). A marker file holding the pom's sha256 says the copy is complete; a changed
pom refreshes it. Test sessions thus start a broker in seconds after the first download.

When ``KAFKA_BOOTSTRAP_SERVERS`` or ``REDIS_URL`` is set, ``up`` uses that server instead of
starting one (``external``), and ``down`` never touches it: it only stops processes whose pids
this state dir recorded.

Every operation on one state dir takes an exclusive lock (``<state>/.lock``), so concurrent
``up`` calls (pytest-xdist workers, two terminals) start each server once.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import string
import struct
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "KAFKA_VERSION",
    "DEFAULT_KAFKA_PORT",
    "DEFAULT_CONTROLLER_PORT",
    "DEFAULT_REDIS_PORT",
    "StackError",
    "StackInfo",
    "ServiceStatus",
    "StackStatus",
    "up",
    "down",
    "status",
    "start_kafka",
    "stop_kafka",
    "kafka_classpath",
    "kafka_libs_dir",
    "ensure_kafka_libs",
    "default_state_dir",
]

KAFKA_VERSION = "3.9.1"
DEFAULT_KAFKA_PORT = 19092
DEFAULT_CONTROLLER_PORT = 19093
DEFAULT_REDIS_PORT = 16379

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
KAFKA_PROPERTIES_TEMPLATE = HERE / "kafka.properties"
LOG4J_PROPERTIES = HERE / "log4j.properties"

# The broker's JVM: a small heap (these machines are shared), GC settings of kafka-run-class.sh.
KAFKA_JVM_OPTS = (
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
# One-shot tools (storage format): start fast, use little.
TOOL_JVM_OPTS = ("-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Djava.awt.headless=true")

READY_TIMEOUT_S = 90.0
STOP_GRACE_S = 30.0

# Servers this process started and has not yet seen exit: polling them reaps them, and keeping
# the Popen objects alive spares long-lived callers (pytest) "still running" ResourceWarnings.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class StackError(RuntimeError):
    """The stack could not be started or stopped; the message says what to do next."""


@dataclass(frozen=True)
class StackInfo:
    """Where the stack's servers listen. ``external`` is true when any came from the env."""

    bootstrap_servers: str
    redis_url: str
    external: bool
    kafka_external: bool = False
    redis_external: bool = False
    state_dir: Path | None = None


@dataclass(frozen=True)
class ServiceStatus:
    name: str  # "kafka" or "redis"
    running: bool
    pid: int | None
    address: str | None  # bootstrap servers or Redis URL
    external: bool
    log: Path | None


@dataclass(frozen=True)
class StackStatus:
    state_dir: Path
    kafka: ServiceStatus  # a cluster's: running when every node runs, its address every node's
    redis: ServiceStatus
    nodes: tuple[ServiceStatus, ...] = ()  # a cluster's nodes ("kafka-1", ...); empty for one node

    @property
    def services(self) -> tuple[ServiceStatus, ServiceStatus]:
        return (self.kafka, self.redis)

    @property
    def running(self) -> bool:
        """Both servers are up (started here or external)."""
        return self.kafka.running and self.redis.running


# --------------------------------------------------------------------------- public API


def default_state_dir() -> Path:
    return Path.cwd() / ".skysentry" / "stack"


def up(
    state_dir: Path | None = None,
    *,
    kafka_port: int | None = None,
    redis_port: int | None = None,
    use_env: bool = True,
    timeout_s: float = READY_TIMEOUT_S,
    brokers: int | None = None,
) -> StackInfo:
    """Start Kafka and Redis (those not already running) and wait until both answer.

    ``brokers`` > 1 starts a Kafka cluster of that many nodes instead of the single node
    (:mod:`deploy.local.cluster`: replication factor 3, ``min.insync.replicas=2``; its ports are
    always free ones); ``None`` keeps what the state dir already has (one node when new).

    Ports: ``None`` reuses the ports recorded in the state dir, else the defaults (19092 Kafka,
    19093 its controller, 16379 Redis) when free, else free ports; ``0`` reuses the recorded
    port, else picks a free one (never the default: what a test session wants); a number is
    that port. Idempotent: while both run it returns the same :class:`StackInfo` and starts
    nothing; a server whose process died is started again on its ports, with its data.
    ``use_env=False`` ignores ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL``.
    """
    state = _state_path(state_dir)
    with _locked(state):
        doc = _load(state)
        env_kafka, env_redis = _external(doc, use_env)
        brokers = brokers or len(doc.get("cluster", {}).get("nodes", [])) or 1
        if env_kafka is None and brokers > 1:
            from deploy.local import cluster

            cluster.ensure(state, doc, brokers, timeout_s)
        elif env_kafka is None:
            _ensure_kafka(state, doc, kafka_port, timeout_s)
        if env_redis is None:
            _ensure_redis(state, doc, redis_port, timeout_s)
        return StackInfo(
            bootstrap_servers=env_kafka or _kafka_address(doc),
            redis_url=env_redis or _redis_url(doc),
            external=env_kafka is not None or env_redis is not None,
            kafka_external=env_kafka is not None,
            redis_external=env_redis is not None,
            state_dir=state,
        )


def down(state_dir: Path | None = None, *, grace_s: float = STOP_GRACE_S) -> None:
    """Stop the servers this state dir started (SIGTERM, then SIGKILL after ``grace_s``).

    Idempotent; external servers and the data (topics, cluster id, ports) are left alone, so a
    later ``up`` brings the same stack back.
    """
    state = _state_path(state_dir, create=False)
    if not state.is_dir():
        return
    with _locked(state):
        doc = _load(state)
        _stop(state, doc, "kafka", grace_s)
        if doc.get("cluster"):
            from deploy.local import cluster

            cluster.stop_all(state, doc, grace_s)
        _stop(state, doc, "redis", grace_s)


def status(state_dir: Path | None = None, *, use_env: bool = True) -> StackStatus:
    """Which servers run, their pids and addresses. Never starts or stops anything.

    A server named by ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` (unless ``use_env=False``)
    is reported as external, running when its port accepts a connection.
    """
    state = _state_path(state_dir, create=False)
    doc = _load(state) if state.is_dir() else {}
    kafka_doc, redis_doc = doc.get("kafka", {}), doc.get("redis", {})

    env_kafka, env_redis = _external(doc, use_env)
    nodes: tuple[ServiceStatus, ...] = ()
    if env_kafka is not None:
        host, port = _first_host_port(env_kafka, 9092)
        kafka = ServiceStatus("kafka", _tcp_open(host, port), None, env_kafka, True, None)
    elif doc.get("cluster", {}).get("nodes"):
        from deploy.local import cluster

        nodes = tuple(ServiceStatus(f"kafka-{n['id']}", cluster.alive(state, n) and _tcp_open(HOST, n["port"]),
                                    n["pid"] if cluster.alive(state, n) else None, f"{HOST}:{n['port']}", False,
                                    cluster.log_path(state, n["id"])) for n in doc["cluster"]["nodes"])
        kafka = ServiceStatus("kafka", all(n.running for n in nodes), None, _kafka_address(doc), False,
                              state / "cluster")
    else:
        pid = kafka_doc.get("pid")
        alive = _kafka_alive(state, pid)
        address = _kafka_address(doc) if kafka_doc.get("port") else None
        running = alive and _tcp_open(HOST, kafka_doc["port"])
        kafka = ServiceStatus("kafka", running, pid if alive else None, address, False, state / "kafka.log")

    if env_redis is not None:
        parts = urlsplit(env_redis)
        ok = _tcp_open(parts.hostname or "localhost", parts.port or 6379)
        redis = ServiceStatus("redis", ok, None, env_redis, True, None)
    else:
        pid = redis_doc.get("pid")
        port = redis_doc.get("port")
        alive = _redis_alive(pid, port)
        running = alive and _tcp_open(HOST, port)
        address = _redis_url(doc) if port else None
        redis = ServiceStatus("redis", running, pid if alive else None, address, False, state / "redis.log")
    return StackStatus(state, kafka, redis, nodes)


def start_kafka(state_dir: Path | None = None, *, timeout_s: float = READY_TIMEOUT_S) -> str:
    """Start this state dir's broker (same port, same data) unless it runs; return its address.

    Ignores ``KAFKA_BOOTSTRAP_SERVERS``: fault drills call it after :func:`stop_kafka`.
    """
    state = _state_path(state_dir)
    with _locked(state):
        doc = _load(state)
        _ensure_kafka(state, doc, None, timeout_s)
        return _kafka_address(doc)


def start_redis(state_dir: Path | None = None, *, port: int | None = None,
                timeout_s: float = READY_TIMEOUT_S) -> str:
    """Start this state dir's Redis alone (``port`` 0: any free one) unless it runs; return its
    URL. ``skysentry eval`` uses it for the alerting's confirmation rule; :func:`down` stops it."""
    state = _state_path(state_dir)
    with _locked(state):
        doc = _load(state)
        _ensure_redis(state, doc, port, timeout_s)
        return _redis_url(doc)


def stop_kafka(state_dir: Path | None = None, *, grace_s: float = STOP_GRACE_S) -> None:
    """Stop this state dir's broker only (Redis keeps running); ``start_kafka`` brings it back."""
    state = _state_path(state_dir, create=False)
    if not state.is_dir():
        return
    with _locked(state):
        _stop(state, _load(state), "kafka", grace_s)


def kafka_classpath(state_dir: Path | None = None) -> str:
    """The ``-cp`` value that runs Kafka's Java classes (e.g. ``kafka.tools``, benches'
    ``org.apache.kafka.tools.ProducerPerformance``), fetching the jars first if needed.

    The jars are shared by all state dirs (see the module docstring); ``state_dir`` is accepted
    for symmetry with the other functions and not needed.
    """
    return str(ensure_kafka_libs() / "*")


def kafka_libs_dir() -> Path:
    """Where the Kafka jars live: ``$SKYSENTRY_KAFKA_LIBS``, else the user cache dir."""
    if configured := _env("SKYSENTRY_KAFKA_LIBS"):
        return Path(configured).expanduser().resolve()
    cache = _env("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "skysentry" / f"kafka-libs-{KAFKA_VERSION}"


def ensure_kafka_libs() -> Path:
    """Copy Kafka's jars (pinned by deploy/local/pom.xml) into :func:`kafka_libs_dir` once.

    A folder named by ``SKYSENTRY_KAFKA_LIBS`` that already holds the Kafka jars but no marker
    was filled by hand (an offline machine): it is used as it is.
    """
    libs = kafka_libs_dir()
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    marker = libs / ".pom-sha256"
    by_hand = _env("SKYSENTRY_KAFKA_LIBS") is not None and not marker.exists() and all(
        (libs / jar).is_file() for jar in (f"kafka_2.13-{KAFKA_VERSION}.jar", f"kafka-tools-{KAFKA_VERSION}.jar")
    )
    if by_hand:
        return libs

    def complete() -> bool:
        return marker.is_file() and marker.read_text().strip() == digest

    if complete():
        return libs
    libs.mkdir(parents=True, exist_ok=True)
    with _flock(libs / ".lock"):
        if complete():  # another process fetched them while we waited
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError(
                "Maven (mvn) is not on PATH; it fetches Kafka's jars from Maven Central. "
                "Install it (`apt-get install maven`) or point SKYSENTRY_KAFKA_LIBS at a folder "
                "holding the jars of deploy/local/pom.xml."
            )
        for old in libs.glob("*.jar"):  # a different pom: no stale versions on the classpath
            old.unlink()
        cmd = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(POM),
               "dependency:copy-dependencies", f"-DoutputDirectory={libs}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            out = (done.stdout + done.stderr).strip()[-3000:]
            raise StackError(
                f"fetching Kafka {KAFKA_VERSION} jars with Maven failed (exit {done.returncode}):\n"
                f"{out}\nCheck access to Maven Central (or a mirror in ~/.m2/settings.xml) and "
                "run `skysentry stack up` again."
            )
        marker.write_text(digest + "\n")
    return libs


# --------------------------------------------------------------------------- Kafka


def _ensure_kafka(state: Path, doc: dict[str, Any], want_port: int | None, timeout_s: float) -> None:
    entry = doc.setdefault("kafka", {})
    if _kafka_alive(state, entry.get("pid")):
        if want_port not in (None, 0) and want_port != entry["port"]:
            raise StackError(
                f"Kafka of {state} already runs on port {entry['port']}, not {want_port}; "
                f"run `skysentry stack down --state-dir {state}` first or leave the port out."
            )
        _wait_ready(lambda: _kafka_ready(HOST, entry["port"]), None, timeout_s, "Kafka", state / "kafka.log", 0)
        return

    taken: set[int] = {doc.get("redis", {}).get("port") or 0}
    port = _pick_port(want_port, entry.get("port"), DEFAULT_KAFKA_PORT, taken)
    taken.add(port)
    # The controller follows the broker: defaults with default ports, else a free one.
    controller = _pick_port(None if want_port is None else 0, entry.get("controller_port"),
                            DEFAULT_CONTROLLER_PORT, taken)
    for p, what in ((port, "Kafka"), (controller, "Kafka's controller")):
        _require_free(p, what, state)
    entry.update(port=port, controller_port=controller, pid=None)
    entry.setdefault("cluster_id", _new_cluster_id())
    _save(state, doc)

    java = _java()
    classpath = kafka_classpath()
    props = _render_kafka_properties(state, port, controller)
    log = state / "kafka.log"
    _format_storage(java, classpath, props, entry["cluster_id"], state, log)

    offset = log.stat().st_size if log.exists() else 0
    cmd = [java, *KAFKA_JVM_OPTS, f"-Dlog4j.configuration={LOG4J_PROPERTIES.as_uri()}",
           "-cp", classpath, "kafka.Kafka", str(props)]
    proc = _spawn(cmd, state, log, f"kafka {KAFKA_VERSION} on {HOST}:{port}")
    entry.update(pid=proc.pid, started_at=time.time())
    _save(state, doc)
    try:
        _wait_ready(lambda: _kafka_ready(HOST, port), proc, timeout_s, "Kafka", log, offset)
    except StackError:
        _terminate(proc.pid, lambda: proc.poll() is None, 5.0)
        entry["pid"] = None
        _save(state, doc)
        raise


def _render_kafka_properties(state: Path, port: int, controller: int) -> Path:
    data_dir = state / "kafka-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    text = string.Template(KAFKA_PROPERTIES_TEMPLATE.read_text()).substitute(
        kafka_port=port, controller_port=controller, log_dir=str(data_dir)
    )
    props = state / "kafka.properties"
    props.write_text(text)
    return props


def _format_storage(java: str, classpath: str, props: Path, cluster_id: str, state: Path, log: Path,
                    data_dir: Path | None = None) -> None:
    """``kafka-storage format`` once per data dir (``--ignore-formatted`` keeps existing data)."""
    data_dir = data_dir or state / "kafka-data"
    if (data_dir / "meta.properties").exists():
        return
    cmd = [java, *TOOL_JVM_OPTS, f"-Dlog4j.configuration={LOG4J_PROPERTIES.as_uri()}",
           "-cp", classpath, "kafka.tools.StorageTool", "format",
           "--config", str(props), "--cluster-id", cluster_id, "--ignore-formatted"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=state)
    with log.open("a") as f:
        f.write(f"=== {_now()} kafka-storage format --cluster-id {cluster_id}\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        raise StackError(
            f"formatting Kafka's storage in {data_dir} failed (exit {done.returncode}):\n"
            f"{(done.stdout + done.stderr).strip()[-3000:]}\n"
            f"If that dir holds another cluster's data, remove {state} and run `up` again."
        )


def _kafka_ready(host: str, port: int, timeout: float = 3.0) -> bool:
    """One Metadata (v4) round trip that lists at least one broker: the node is unfenced.

    Raw protocol, so it works from sync code, inside a running event loop, and without any
    client library. v4 is served by Kafka 1.0 through 4.x.
    """
    client_id = b"skysentry-stack"
    body = struct.pack(">hhih", 3, 4, 7, len(client_id)) + client_id + struct.pack(">ib", 0, 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            resp = _recv_exact(sock, size)
        correlation, _throttle, brokers = struct.unpack_from(">iii", resp, 0)
        return correlation == 7 and brokers > 0
    except (OSError, struct.error, EOFError):
        return False


def _kafka_alive(state: Path, pid: int | None) -> bool:
    return _pid_alive(pid, ("kafka.Kafka", str(state / "kafka.properties")))


def _kafka_address(doc: dict[str, Any]) -> str:
    """Bootstrap servers: the single node's address, or every node of a cluster."""
    if doc.get("cluster", {}).get("nodes"):
        return ",".join(f"{HOST}:{n['port']}" for n in doc["cluster"]["nodes"])
    return f"{HOST}:{doc.get('kafka', {}).get('port', DEFAULT_KAFKA_PORT)}"


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, base64url without padding (as kafka-storage's)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):  # Kafka's Uuid.randomUuid avoids these too (CLI parsing)
            return cid


def _java() -> str:
    home = _env("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").exists() else shutil.which("java")
    if java is None:
        raise StackError("Java is not on PATH; Kafka needs Java 17+: `apt-get install openjdk-17-jre-headless`.")
    return java


# --------------------------------------------------------------------------- Redis


def _ensure_redis(state: Path, doc: dict[str, Any], want_port: int | None, timeout_s: float) -> None:
    entry = doc.setdefault("redis", {})
    if _redis_alive(entry.get("pid"), entry.get("port")):
        if want_port not in (None, 0) and want_port != entry["port"]:
            raise StackError(
                f"Redis of {state} already runs on port {entry['port']}, not {want_port}; "
                f"run `skysentry stack down --state-dir {state}` first or leave the port out."
            )
        _wait_ready(lambda: _redis_ready(HOST, entry["port"]), None, timeout_s, "Redis", state / "redis.log", 0)
        return

    server = shutil.which("redis-server")
    if server is None:
        raise StackError("redis-server is not on PATH; install Debian's: `apt-get install redis-server` "
                         "(or set REDIS_URL to use a running Redis).")
    kafka = doc.get("kafka", {})
    taken = {kafka.get("port") or 0, kafka.get("controller_port") or 0}
    port = _pick_port(want_port, entry.get("port"), DEFAULT_REDIS_PORT, taken)
    _require_free(port, "Redis", state)
    entry.update(port=port, pid=None)
    _save(state, doc)

    log = state / "redis.log"
    offset = log.stat().st_size if log.exists() else 0
    # The settings alerting's guarantees need (README, "Redis for alerting"): the append-only
    # file rather than snapshots, each write in it before Redis answers (fsync always: with
    # everysec a kill -9 can lose the last second), and never evicting a key to make room.
    cmd = [server, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "yes",
           "--appendfsync", "always", "--maxmemory-policy", "noeviction",
           "--dir", str(state), "--daemonize", "no", "--logfile", ""]
    proc = _spawn(cmd, state, log, f"redis-server on {HOST}:{port}")
    entry.update(pid=proc.pid, started_at=time.time())
    _save(state, doc)
    try:
        _wait_ready(lambda: _redis_ready(HOST, port), proc, timeout_s, "Redis", log, offset)
    except StackError:
        _terminate(proc.pid, lambda: proc.poll() is None, 5.0)
        entry["pid"] = None
        _save(state, doc)
        raise


def _redis_ready(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _redis_alive(pid: int | None, port: int | None) -> bool:
    # redis-server rewrites its title to "redis-server 127.0.0.1:PORT".
    return _pid_alive(pid, ("redis-server", f":{port}"))


def _redis_url(doc: dict[str, Any]) -> str:
    return f"redis://{HOST}:{doc.get('redis', {}).get('port', DEFAULT_REDIS_PORT)}/0"


# --------------------------------------------------------------------------- processes


def _spawn(cmd: list[str], state: Path, log: Path, what: str) -> subprocess.Popen[bytes]:
    """Start ``cmd`` detached (own session, no stdin), appending its output to ``log``."""
    with log.open("ab") as out:
        out.write(f"=== {_now()} starting {what}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, cwd=state, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    _CHILDREN[proc.pid] = proc
    return proc


def _stop(state: Path, doc: dict[str, Any], name: str, grace_s: float) -> None:
    entry = doc.get(name, {})
    pid = entry.get("pid")
    if pid:
        if name == "kafka":
            _terminate(pid, lambda: _kafka_alive(state, pid), grace_s)
            ports = [entry.get("port"), entry.get("controller_port")]
        else:
            _terminate(pid, lambda: _redis_alive(pid, entry.get("port")), grace_s)
            ports = [entry.get("port")]
        for port in filter(None, ports):  # so that a `start` right after finds them free
            _wait_port_free(port, 10.0)
    if entry:
        entry["pid"] = None
        _save(state, doc)


def _terminate(pid: int, alive: Callable[[], bool], grace_s: float) -> None:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL; ``alive`` guards against pid reuse."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        if not alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            _reap(pid)
            if not alive():
                return
            time.sleep(0.1)
    if alive():
        raise StackError(f"process {pid} survived SIGKILL; check it with `ps -p {pid}`")


def _pid_alive(pid: int | None, markers: tuple[str, ...]) -> bool:
    """The process exists, is not a zombie, and its command line has every marker."""
    if not pid:
        return False
    _reap(pid)
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # no procfs (macOS): trust the pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    if not cmdline:  # zombie
        return False
    text = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return all(m in text for m in markers)


def _reap(pid: int) -> None:
    """Collect the exit status of a child of ours that died (else it lingers as a zombie)."""
    if (proc := _CHILDREN.get(pid)) is not None:
        if proc.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _wait_ready(check: Callable[[], bool], proc: subprocess.Popen[bytes] | None, timeout_s: float,
                what: str, log: Path, offset: int) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what} exited with status {proc.returncode} while starting; "
                             f"the end of {log}:\n{_tail(log, offset)}")
        if time.monotonic() > deadline:
            raise StackError(f"{what} did not answer within {timeout_s:.0f} s; "
                             f"the end of {log}:\n{_tail(log, offset)}")
        time.sleep(0.25)


def _tail(log: Path, offset: int, lines: int = 40) -> str:
    try:
        with log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


# --------------------------------------------------------------------------- ports


def _pick_port(requested: int | None, recorded: int | None, default: int, taken: set[int]) -> int:
    if requested not in (None, 0):
        return requested
    if recorded:
        return recorded
    if requested is None and default and default not in taken and _port_free(default):
        return default
    return _free_port(taken)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Kafka and Redis bind
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port(taken: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port


def _require_free(port: int, what: str, state: Path, wait_s: float = 10.0) -> None:
    # A killed JVM looks dead (no command line) a moment before its many threads have exited
    # and closed its sockets: give a port that was ours a few seconds to come free.
    if not _wait_port_free(port, wait_s):
        raise StackError(
            f"port {port} for {what} ({HOST}) is taken by another process. Stop it, or pick other "
            f"ports: `skysentry stack up --kafka-port/--redis-port`, or a fresh state dir than {state}."
        )


def _wait_port_free(port: int, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while not _port_free(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _first_host_port(servers: str, default_port: int) -> tuple[str, int]:
    first = servers.split(",")[0].strip()
    parts = urlsplit(first if "://" in first else f"//{first}")
    return parts.hostname or "localhost", parts.port or default_port


# --------------------------------------------------------------------------- state


def _state_path(state_dir: Path | str | None, *, create: bool = True) -> Path:
    state = Path(state_dir).expanduser() if state_dir is not None else default_state_dir()
    state = state.resolve()
    if create:
        state.mkdir(parents=True, exist_ok=True)
    return state


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _locked(state: Path) -> contextlib.AbstractContextManager[None]:
    return _flock(state / ".lock")


def _load(state: Path) -> dict[str, Any]:
    path = state / "stack.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise StackError(f"{path} is not valid JSON ({exc}); stop what it started by hand and remove it") from exc


def _save(state: Path, doc: dict[str, Any]) -> None:
    doc["version"] = 1
    tmp = state / "stack.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    tmp.replace(state / "stack.json")


def _external(doc: dict[str, Any], use_env: bool) -> tuple[str | None, str | None]:
    """``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` when set and naming other servers than
    this state dir's own (a shell that exported what ``up`` printed still gets them started)."""
    if not use_env:
        return None, None
    kafka, redis = _env("KAFKA_BOOTSTRAP_SERVERS"), _env("REDIS_URL")
    if kafka is not None and doc.get("kafka", {}).get("port") and kafka == _kafka_address(doc):
        kafka = None
    if redis is not None and doc.get("redis", {}).get("port") and redis.rstrip("/") in (
        _redis_url(doc), _redis_url(doc)[: -len("/0")]
    ):
        redis = None
    return kafka, redis


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return bytes(buf)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
