"""The README's command lines parse with the real CLI (a flag it names must exist)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from glassgpt.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    """`glassgpt ...` lines (and `... -m glassgpt ...`) of the README's shell blocks."""
    commands, language = [], None                  # language: None outside a fenced block
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            language = line[3:].strip() if language is None else None
            continue
        if language not in ("bash", "sh", ""):
            continue
        line = re.sub(r"\s+#.*$", "", line).strip()
        match = re.match(r"(?:glassgpt|.*\s-m glassgpt)\s(.*)$", line)
        if match:
            commands.append(match.group(1).strip())
    return commands


COMMANDS = readme_commands()


def test_the_readme_has_commands():
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("command", COMMANDS)
def test_each_readme_command_parses(command):
    parser = build_parser()
    try:
        args = parser.parse_args(shlex.split(command))
    except SystemExit as e:
        pytest.fail(f"`glassgpt {command}` does not parse (exit {e.code})")
    assert getattr(args, "func", None) is not None, command
