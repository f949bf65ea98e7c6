"""``make demo`` works: the example migrates a session between two Jupyter servers, identically."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(300)]

DEMO = Path(__file__).resolve().parents[2] / "examples" / "migrate_demo.py"


def test_demo_moves_the_session_between_two_servers() -> None:
    done = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "$ nbmigrate migrate 'http://127.0.0.1:" in out and "?token=…" in out  # the command, tokens hidden
    assert "migrated http://127.0.0.1:" in out and "streamed through this machine" in out
    assert "stored     slow" in out and "replayed cells: " in out  # the plan, explained
    assert out.rstrip().endswith("identical: yes")
