"""Constants and helpers shared by the tests (importable: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SYNTHTRIALS_DATA", ROOT.parent / "shared" / "data")).resolve()
TOP = DATA / "top"
XML_FILE = DATA / "ctgov-xml" / "NCT00000378.xml"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOP_FILES = sorted(TOP.glob("*.csv"))


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `synthtrials` console entry point in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "synthtrials.scripts.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
