"""The shape every long-running service shares: one ``run(stop)`` coroutine, stopped
gracefully on SIGTERM/SIGINT (DESIGN §9); and :class:`ServiceProcess`, one such service
started as a child process (the local deployment, the benches and the tests)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from skysentry.metrics import HEALTH

log = logging.getLogger(__name__)


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` in a fresh event loop; SIGTERM/SIGINT set ``stop``, and a second
    signal cancels the task outright."""

    async def _runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def _on_signal(sig: signal.Signals) -> None:
            if stop.is_set():
                log.warning("second %s: cancelling", sig.name)
                task.cancel()
            else:
                log.info("%s: shutting down gracefully", sig.name)
                stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal, sig)
        heartbeat = HEALTH.start_heartbeat()  # /livez: this loop is alive
        try:
            await main(stop)
        finally:
            heartbeat.cancel()

    try:
        asyncio.run(_runner())
    except asyncio.CancelledError:
        pass


class ServiceProcess:
    """``python -m MODULE ARGS... --config FILE`` in a child process, in its own session (a
    Ctrl-C at the terminal reaches the caller, which stops it with SIGTERM). Its stderr lines
    are kept (``raw``; the JSON ones parsed in ``lines``) and appended to ``log_path`` if given,
    so callers can wait on what it logs: a consumer's partition assignment, its errors."""

    def __init__(self, name: str, module_args: list[str], config: Path, *, env: dict[str, str] | None = None,
                 log_path: Path | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.args = [sys.executable, "-m", *module_args, "--config", str(config)]
        self.env, self.log_path, self.cwd = env, log_path, cwd
        self.raw: list[str] = []
        self.lines: list[dict] = []
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ServiceProcess":
        self.proc = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        threading.Thread(target=self._read, name=f"log:{self.name}", daemon=True).start()
        return self

    def _read(self) -> None:
        with open(self.log_path, "a") if self.log_path else contextlib.nullcontext() as out:
            for line in self.proc.stderr:
                self.raw.append(line)
                if out is not None:
                    out.write(line)
                    out.flush()
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if isinstance(rec, dict):
                        self.lines.append(rec)

    def tail(self, n: int = 20) -> str:
        return "".join(self.raw[-n:])

    def assignments(self) -> list[list[int]]:
        """The partitions of each assignment the service logged, oldest first."""
        return [rec["partitions"] for rec in self.lines if rec.get("event") == "assigned"]

    async def wait_assigned(self, predicate: Callable[[list[int]], bool] = bool, timeout: float = 60.0) -> list[int]:
        """Until the latest assignment satisfies ``predicate`` (default: it owns a partition)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.assignments()
            if got and predicate(got[-1]):
                return got[-1]
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}:\n{self.tail(30)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no matching assignment within {timeout:.0f}s; saw {got}:\n"
                                   f"{self.tail()}")
            await asyncio.sleep(0.1)

    def errors(self) -> list[dict]:
        return [r for r in self.lines if r.get("level") in ("ERROR", "CRITICAL")]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a graceful stop), SIGKILL after ``timeout``; the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode
