"""``skysentry console`` as deployed (a child process under uvicorn): binds loopback by default,
serves a stored evidence file only by a valid signed link, never prints its secret, stops on
SIGTERM with status 0; without a secret it refuses every link."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from alerting.evidence import EvidenceStore, signed_url

ROOT = Path(__file__).resolve().parents[3]
SECRET = "console-test-secret-4f9a1c"


class Child:
    def __init__(self, env: dict[str, str], *args: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSENTRY_")} | env
        self.proc = subprocess.Popen([sys.executable, "-m", "console", "--port", "0", *args], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")), daemon=True).start()

    def url(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(r"running on (http://[\d.]+:\d+)", line):
                    return m.group(1)
            assert self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.05)
        raise TimeoutError("".join(self.lines))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)


@pytest.fixture
def stored(tmp_path) -> tuple[Path, str]:
    store = EvidenceStore(str(tmp_path / "ev"))
    store.put("0190abc/det-1/snapshot.jpg", b"\xff\xd8\xff-a-jpeg")
    return tmp_path / "ev", "0190abc/det-1/snapshot.jpg"


def test_console_serves_signed_evidence_on_loopback(stored):
    root, key = stored
    child = Child({"SKYSENTRY_EVIDENCE__SECRET": SECRET, "SKYSENTRY_EVIDENCE__URL": str(root)})
    try:
        base = child.url()
        assert base.startswith("http://127.0.0.1:"), base  # loopback unless told otherwise
        exp = int(time.time()) + 60
        ok = httpx.get(signed_url(base, SECRET, key, exp), timeout=10)
        assert ok.status_code == 200 and ok.content == b"\xff\xd8\xff-a-jpeg"
        assert ok.headers["content-type"] == "image/jpeg" and "private" in ok.headers["cache-control"]
        assert httpx.get(f"{base}/evidence/{key}", timeout=10).status_code == 403
        assert httpx.get(signed_url(base, "guess", key, exp), timeout=10).status_code == 403
        assert httpx.get(f"{base}/evidence/../../etc/passwd", timeout=10).status_code == 404
        assert httpx.get(f"{base}/healthz", timeout=10).json() == {"status": "ok"}
    finally:
        status = child.stop()
    assert status == 0
    out = "".join(child.lines)
    assert SECRET not in out and "sig=" not in out  # neither the key nor a link reaches the log


def test_console_without_a_secret_refuses_every_link(stored):
    root, key = stored
    child = Child({"SKYSENTRY_EVIDENCE__URL": str(root)})
    try:
        base = child.url()
        assert httpx.get(signed_url(base, "", key, int(time.time()) + 60), timeout=10).status_code == 403
    finally:
        child.stop()
    assert "no evidence secret" in "".join(child.lines)
