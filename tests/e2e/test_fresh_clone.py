"""A new user's first command leaves the tree as it was: the demo, run from a fresh clone of
the committed tree (its own code, its own shipped models), rewrites no tracked file and leaves
no untracked one outside .gitignore. Short (5 s of streaming, no field clips): what is checked
is the tree, not the detections (tests/e2e/test_pipeline.py checks those)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.mark.timeout(400)
def test_the_demo_leaves_a_fresh_clone_clean(stack, tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    env = {**os.environ, "PYTHONPATH": str(clone)}  # the clone's code, not this checkout's
    run = subprocess.run([sys.executable, "-m", "deploy.local.demo", "--seconds", "5", "--no-field-clips"],
                         cwd=clone, env=env, capture_output=True, text=True, timeout=360)
    assert "Service logs:" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]  # the run reached its summary
    assert "ERROR" not in run.stdout + run.stderr
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", f"the demo changed the tree:\n{status}"
