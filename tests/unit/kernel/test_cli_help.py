"""The help a user reads: flags look like flags, every command says what its exit status
means, and `make help` lists every target."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from skysentry.cli import app

ROOT = Path(__file__).resolve().parents[3]
WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}


def command_paths(command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if getattr(command, "commands", None):  # a group (typer's own group class need not be click's)
        return [p for name, sub in sorted(command.commands.items()) for p in command_paths(sub, (*prefix, name))]
    return [prefix]


COMMANDS = command_paths(typer.main.get_command(app))


def help_of(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def option_line(text: str, option: str) -> str:
    return next(line for line in text.splitlines() if re.search(rf"{option}\b", line))


@pytest.mark.parametrize("path", [("tail",), ("stack", "status"), ("alert", "status")], ids=" ".join)
def test_json_renders_as_a_flag(path):
    text = help_of(*path)
    assert not re.search(r"--json\s+<", option_line(text, "--json")), option_line(text, "--json")
    assert not re.search(r"--help\s+<", option_line(text, "--help"))


def test_options_with_a_value_keep_their_placeholder():
    assert re.search(r"--max\s+<int>", option_line(help_of("tail"), "--max"))


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_documents_its_exit_status_and_has_no_bool_placeholder(path):
    text = " ".join(help_of(*path).split())
    assert "Exit status: 0 " in text and "usage error" in text
    assert "<bool>" not in text


def test_stack_status_help_says_it_exits_1_when_stopped():
    text = " ".join(help_of("stack", "status").split())
    assert "1 one of them is stopped" in text


def test_make_help_lists_every_phony_target():
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split()
    listed = set(re.findall(r"^\s+make (\S+)", subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True,
                                                                text=True, check=True).stdout, re.M))
    assert set(phony) - listed == set(), "add a `## what it does` comment to these targets"
