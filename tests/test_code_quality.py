"""The project's own rules, checked like any other behaviour: lint, types, and the direction of imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "storage", "feeds", "workers")
# What each package may import of ours (DESIGN.md); storage and feeds may use the shared error tree in
# pipeline.errors and the text rules in pipeline.text (modules that import nothing of ours).
ALLOWED = {
    "pipeline": {"pipeline"},
    "storage": {"storage", "pipeline.errors", "pipeline.text"},
    "feeds": {"feeds", "storage", "pipeline.errors", "pipeline.text"},
    "workers": set(PACKAGES),
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] in PACKAGES}


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_point_down(package: str) -> None:
    allowed = ALLOWED[package]
    for path in (ROOT / package).rglob("*.py"):
        for name in _imports(path):
            ok = any(name == a or name.startswith(a + ".") or (a in PACKAGES and name.split(".")[0] == a)
                     for a in allowed)
            assert ok, f"{path.relative_to(ROOT)} imports {name}, which {package}/ must not depend on"


def test_pipeline_never_imports_celery_sqlalchemy_or_boto3() -> None:
    for path in (ROOT / "pipeline").rglob("*.py"):
        text = path.read_text()
        for banned in ("import celery", "from celery", "sqlalchemy", "import boto3", "from boto3"):
            assert banned not in text, f"{path.name} uses {banned}"


def test_ruff_is_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_mypy_is_clean() -> None:
    """The packages and the tests (benchmarks too): a name renamed or moved in a package is found in the tests that
    still reach for it before the slow test that uses it runs."""
    done = subprocess.run([sys.executable, "-m", "mypy", *PACKAGES, "tests"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


MAX_MODULE_LINES = 420  # a module a newcomer reads in one sitting; past it, a part with a job of its own moves out


def test_modules_stay_readable_in_one_sitting() -> None:
    long = {str(path.relative_to(ROOT)): n for package in PACKAGES for path in (ROOT / package).rglob("*.py")
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"
