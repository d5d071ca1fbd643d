"""The static checks CI runs inside `make test`: ruff and mypy, with pyproject.toml's settings."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(tool: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(tool) is None:
        pytest.skip(f"{tool} is not installed (the test extra has it: pip install -e '.[test]', as `make test` does)")
    return subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.timeout(300)
def test_ruff_check_passes():
    """`ruff check` finds nothing in the package, the tests, the benchmarks and the tools."""
    result = _run("ruff", "check", "--no-cache", "camserver", "tests", "bench", "tools", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(900)
def test_mypy_passes():
    """mypy reports no error in camserver/ (strict where pyproject.toml says so, default checks elsewhere)."""
    result = _run("mypy", timeout=840)  # [tool.mypy] names the files; a cold cache takes about a minute
    assert result.returncode == 0, result.stdout + result.stderr
