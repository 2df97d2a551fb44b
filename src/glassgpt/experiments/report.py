"""A report directory: settings, one JSON line per sample as it is made, then numbers and prose.

    DIR/
      settings.json     what was run (a re-run with the same settings resumes)
      samples.jsonl     one record per sample, appended and flushed as soon as it exists
      results.json      every number of the report
      report.md         Markdown with tables and figures
      *.png             figures

A crash or a failing endpoint loses at most the sample in flight: samples.jsonl holds the
rest, and running the same command again skips what is already there.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..errors import GlassError
from ..fileio import append_line, atomic_write_text, check_writable
from ..jsonsafe import json_safe


class ReportDir:
    def __init__(self, path: str | os.PathLike, settings: dict):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise GlassError(f"{self.path} is a file: give a directory for the report with -o")
        check_writable(self.path)
        self.settings = json.loads(json.dumps(settings))        # plain JSON types, for comparing
        self.samples_file = self.path / "samples.jsonl"
        settings_file = self.path / "settings.json"
        if settings_file.exists() and self.samples_file.exists():
            old = json.loads(settings_file.read_text(encoding="utf-8"))
            if old != self.settings:
                raise GlassError(f"{self.path} holds a run with other settings: choose another -o "
                                 f"directory, or delete {self.samples_file} to start over")
        atomic_write_text(settings_file, json.dumps(self.settings, indent=2))
        self.samples = self.read_samples()

    def read_samples(self) -> list[dict]:
        """Records already on disk; a last line cut off by a crash is dropped."""
        if not self.samples_file.exists():
            return []
        records = []
        for line in self.samples_file.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return records

    def done(self, key: dict) -> dict | None:
        """The stored record whose fields include all of `key`, if any."""
        for record in self.samples:
            if all(record.get(k) == v for k, v in key.items()):
                return record
        return None

    def append(self, record: dict) -> None:
        append_line(self.samples_file, json.dumps(record), sync=True)
        self.samples.append(record)

    def write_results(self, results: dict) -> Path:
        atomic_write_text(self.path / "results.json", json.dumps(json_safe(results), indent=2))
        return self.path / "results.json"

    def write_report(self, markdown: str) -> Path:
        atomic_write_text(self.path / "report.md", markdown)
        return self.path / "report.md"

    def figure_path(self, name: str) -> Path:
        return self.path / name


def md_table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table; floats get 3 significant decimals."""
    def cell(v):
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else f"{v:.3f}"
        return str(v).replace("|", "\\|").replace("\n", "\\n")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
