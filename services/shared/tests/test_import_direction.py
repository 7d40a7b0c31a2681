"""Dependencies point down: the shared package imports none of its consumers,
and the agent imports nothing of the shared package (it installs alone on a node)."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import sm_shared

CONSUMERS = (
    "sm_registry",
    "sm_metrics",
    "sm_commands",
    "sm_gateway",
    "sm_agent",
    "sm_client",
    "sm_ctl",
)
REPO = Path(__file__).resolve().parents[3]
SHARED_SRC = Path(sm_shared.__file__).resolve().parent
AGENT_SRC = REPO / "agent" / "src" / "sm_agent"


def imported_modules(source_dir: Path) -> Iterator[tuple[Path, str]]:
    """Every module named by an import statement under ``source_dir`` (any depth, any scope)."""
    files = sorted(source_dir.rglob("*.py"))
    assert files, f"no sources under {source_dir}"
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path, node.module
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute | ast.Name)
                and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                yield path, node.args[0].value


def top(module: str) -> str:
    return module.split(".")[0]


def test_the_scanner_sees_imports(tmp_path: Path) -> None:
    # The scans below only mean something if this finds every import form.
    (tmp_path / "m.py").write_text(
        "import sm_registry.app\n"
        "from sm_metrics import x\n"
        "def f():\n    from sm_ctl.main import app\n"
        "importlib.import_module('sm_gateway')\n"
        "from . import sibling\n"
    )
    assert {top(m) for _, m in imported_modules(tmp_path)} == {
        "sm_registry",
        "sm_metrics",
        "sm_ctl",
        "sm_gateway",
    }


def test_shared_imports_none_of_its_consumers() -> None:
    offenders = [
        f"{path.relative_to(SHARED_SRC)}: {module}"
        for path, module in imported_modules(SHARED_SRC)
        if top(module) in CONSUMERS
    ]
    assert offenders == []


def test_shared_does_not_depend_on_its_consumers() -> None:
    project = tomllib.loads((SHARED_SRC.parents[1] / "pyproject.toml").read_text())["project"]
    names = " ".join(project["dependencies"]).replace("_", "-")
    for consumer in CONSUMERS:
        assert consumer.replace("_", "-") not in names


@pytest.mark.skipif(not AGENT_SRC.is_dir(), reason="the agent package is not in this checkout")
def test_agent_imports_nothing_of_the_shared_package() -> None:
    offenders = [
        f"{path.relative_to(AGENT_SRC)}: {module}"
        for path, module in imported_modules(AGENT_SRC)
        if top(module) in ("sm_shared", *[c for c in CONSUMERS if c != "sm_agent"])
    ]
    assert offenders == []


def test_agent_distribution_does_not_depend_on_the_shared_package() -> None:
    project = tomllib.loads((REPO / "agent" / "pyproject.toml").read_text())["project"]
    names = [dep.split(";")[0].strip().lower().replace("_", "-") for dep in project["dependencies"]]
    assert not [n for n in names if n.startswith("sm-")]
