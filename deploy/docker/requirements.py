"""Print the requirement lines of pyproject.toml, for the images' dependency layer.

    python deploy/docker/requirements.py [--extra NAME]... [--without NAME]... [PYPROJECT]

The images install the dependencies from this list *before* they copy the source, so that
layer is rebuilt only when the dependency list changes, not on every edit of the code; the
package itself is then installed with ``--no-deps``. ``--without`` drops a base dependency: the
GPU image replaces ``onnxruntime`` with ``onnxruntime-gpu`` (both install the same
``onnxruntime`` Python package, and having both breaks whichever was installed first).

Standard library only (tomllib): it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path


def _name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise SystemExit(f"cannot read the name of requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirements(pyproject: Path, extras: list[str], without: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"{pyproject}: no extra named {', '.join(unknown)} (have: {', '.join(optional)})")
    drop = {_name(w) for w in without}
    base_names = {_name(r) for r in project.get("dependencies", [])}
    missing = drop - base_names
    if missing:
        # A typo here would silently keep the package the image means to replace.
        raise SystemExit(f"{pyproject}: --without {', '.join(sorted(missing))} is not a base dependency")
    lines = [r for r in project.get("dependencies", []) if _name(r) not in drop]
    for extra in extras:
        lines += optional[extra]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", nargs="?", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--extra", action="append", default=[], help="include this optional-dependency group")
    parser.add_argument("--without", action="append", default=[], help="drop this base dependency")
    args = parser.parse_args(argv)
    sys.stdout.write("".join(f"{line}\n" for line in requirements(args.pyproject, args.extra, args.without)))


if __name__ == "__main__":
    main()
