"""The agent installs alone: it imports only the standard library and its three dependencies."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import sm_agent

PACKAGE = Path(sm_agent.__file__).parent
ALLOWED = {"sm_agent", "psutil", "websockets", "cryptography"}


def _imported_roots() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


def test_only_the_standard_library_and_declared_dependencies() -> None:
    foreign = {
        root: files
        for root, files in _imported_roots().items()
        if root not in ALLOWED and root not in sys.stdlib_module_names and root != "__future__"
    }
    assert foreign == {}


def test_declared_dependencies_and_version() -> None:
    project = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text())["project"]
    names = {
        dep.split(">")[0].split("=")[0].split("<")[0].strip() for dep in project["dependencies"]
    }
    assert names == {"psutil", "websockets", "cryptography"}
    assert project["version"] == sm_agent.__version__
    assert project["scripts"]["sm-agent"] == "sm_agent.__main__:main"
