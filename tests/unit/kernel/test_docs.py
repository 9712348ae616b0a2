"""The README and docs/ stand alone: every relative link lands on a file in this repository,
and the package layering that docs/architecture.md states is the one the code keeps."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(doc: Path) -> list[str]:
    """Markdown link targets outside fenced code blocks, without URLs and pure anchors."""
    text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.S | re.M)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(doc):
    broken = []
    for target in relative_links(doc):
        path = (doc.parent / target.split("#")[0]).resolve()
        if not path.is_relative_to(ROOT) or not path.exists():
            broken.append(target)
    assert not broken, f"{doc.name} links to what a clone does not have: {broken}"


def test_the_readme_links_the_architecture():
    assert "docs/architecture.md" in relative_links(ROOT / "README.md")


# What each package may import (docs/architecture.md §1). skysentry/cli.py is the composition
# root and may import every service; nothing else imports trainer.
MAY_IMPORT = {
    "skysentry": {"skysentry"},
    "producers": {"skysentry", "producers"},
    "detectors": {"skysentry", "detectors"},
    "stream_processors": {"skysentry", "detectors", "stream_processors"},
    "alerting": {"skysentry", "alerting"},
    "trainer": {"skysentry", "detectors", "alerting", "deploy", "trainer"},
    "deploy": {"skysentry", "producers", "alerting", "deploy"},
    "console": {"skysentry", "alerting", "console"},
}
SERVING = ("skysentry", "producers", "detectors", "stream_processors", "alerting", "deploy", "console")


def imported_packages(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_packages_import_only_what_the_layering_allows(package):
    ours = set(MAY_IMPORT)
    bad = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        if path == ROOT / "skysentry" / "cli.py":
            continue
        found = imported_packages(path)
        wrong = (found & ours) - MAY_IMPORT[package]
        if package in SERVING and "torch" in found:
            wrong.add("torch")
        if wrong:
            bad[str(path.relative_to(ROOT))] = sorted(wrong)
    assert not bad, f"imports that break the dependency rule (docs/architecture.md §1): {bad}"
