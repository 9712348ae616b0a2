"""``skysentry console`` as a command: beyond loopback without credentials it refuses to start
(exit 2, saying what to set) before opening any port; badly written users are refused the same
way; ``hash-password`` prints a hash the console accepts. The console imports neither torch nor
OpenCV (serving installs without them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from console.auth import parse_users, verify_password

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SKYSENTRY_")}
    return subprocess.run([sys.executable, "-m", "console", *args], cwd=ROOT, env=base | (env or {}), input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_beyond_loopback_without_credentials_it_refuses_to_start():
    r = run("--host", "0.0.0.0", "--port", "0")
    assert r.returncode == 2, (r.stdout, r.stderr)
    text = " ".join(r.stderr.split())
    assert "refusing to listen on 0.0.0.0 without credentials" in text and "SKYSENTRY_CONSOLE__TOKEN" in text
    r = run("--port", "0", env={"SKYSENTRY_CONSOLE__HOST": "192.0.2.10"})  # the same from the settings
    assert r.returncode == 2 and "refusing to listen on 192.0.2.10" in " ".join(r.stderr.split())


def test_bad_credentials_are_refused_at_start_without_echoing_them():
    r = run("--host", "0.0.0.0", "--port", "0", env={"SKYSENTRY_CONSOLE__USERS": "ana:hunter2-plain"})
    assert r.returncode == 2 and "console user 'ana'" in r.stderr and "hunter2" not in r.stderr + r.stdout
    r = run("--host", "0.0.0.0", "--port", "0", env={"SKYSENTRY_CONSOLE__TOKEN": "short"})
    assert r.returncode == 2 and "16 characters" in r.stderr


def test_hash_password_prints_an_entry_the_console_accepts():
    r = run("hash-password", "--user", "ana", stdin="correct horse\n")
    assert r.returncode == 0, r.stderr
    entry = r.stdout.strip()
    users = parse_users(entry)
    assert list(users) == ["ana"] and verify_password("correct horse", users["ana"])
    assert "correct horse" not in entry
    bare = run("hash-password", stdin="x\n").stdout.strip()
    assert bare.startswith("pbkdf2_sha256$600000$")


def test_the_console_imports_neither_torch_nor_opencv():
    code = ("import sys, console.app, console.cli; "
            "print(sorted(m for m in ('torch', 'cv2', 'onnxruntime', 'faust') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
