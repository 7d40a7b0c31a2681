"""How ``smctl run``'s options become the API's target and command body."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from typer.testing import CliRunner

from sm_ctl.run_cli import BadInput, build_body, build_target, labels_for


def body(words: list[str], **options: Any) -> dict[str, Any]:
    given: dict[str, Any] = {
        "target": {"all": True},
        "words": words,
        "service": None,
        "logs": None,
        "lines": None,
        "follow": False,
        "env": [],
        "cwd": None,
        "user": None,
        "timeout": 60,
        "expires": None,
        "batch": None,
        "note": None,
    }
    return build_body(**{**given, **options})


def test_targets() -> None:
    assert build_target(["all"], [], None, False) == {"all": True}
    assert build_target(["group=web"], ["db"], None, False) == {"groups": ["db", "web"]}
    assert build_target(["role in (db,cache)", "env=prod"], [], "a, b,a", False) == {
        "selector": "role in (db,cache),env=prod",
        "node_ids": ["a", "b"],
    }
    for bad in ((["group="], [], None, False), ([], [], None, False), ([], [], " , ", False)):
        with pytest.raises(BadInput):
            build_target(*bad)


def test_one_word_is_a_script_several_an_argv() -> None:
    assert body(["df -h | tail -1"])["shell"] == {"script": "df -h | tail -1"}
    shell = body(["uname", "-a"], env=["LANG=C", "X=a=b"], cwd="/tmp")["shell"]
    assert shell == {"argv": ["uname", "-a"], "env": {"LANG": "C", "X": "a=b"}, "cwd": "/tmp"}
    with pytest.raises(BadInput, match="NAME=VALUE"):
        body(["true"], env=["oops"])


def test_service_and_logs() -> None:
    assert body([], service=("nginx", "restart"))["service"] == {
        "action": "restart",
        "unit": "nginx",
    }
    assert body([], service=("-", "list"))["service"] == {"action": "list"}
    assert body([], logs="nginx", lines=5)["logs"] == {"unit": "nginx", "lines": 5}
    assert body([], logs="/var/log/syslog", follow=True)["logs"] == {
        "path": "/var/log/syslog",
        "follow": True,
    }
    for bad in (
        {"words": []},
        {"words": ["true"], "logs": "x"},
        {"words": [], "logs": "x", "cwd": "/"},
        {"words": ["true"], "lines": 3},
    ):
        with pytest.raises(BadInput):
            body(**bad)


def test_labels_add_the_id_where_host_names_repeat() -> None:
    ids = ["aaaaaaaa-1", "bbbbbbbb-2", "cccccccc-3"]
    hostnames = {"aaaaaaaa-1": "web", "bbbbbbbb-2": "web", "cccccccc-3": "db"}
    assert labels_for(ids, hostnames) == {
        "aaaaaaaa-1": "web/aaaaaaaa",
        "bbbbbbbb-2": "web/bbbbbbbb",
        "cccccccc-3": "db",
    }
    assert labels_for(["x"], {}) == {"x": "x"}


def test_the_remote_commands_load_only_when_used() -> None:
    """`smctl serve` (every child of `up`) does not import them; `smctl run` finds them."""
    probe = (
        "import sys, sm_ctl.main; "
        "print([m for m in ('sm_ctl.remote', 'sm_ctl.fleet_cli', 'sm_ctl.run_cli', "
        "'sm_ctl.audit_cli') if m in sys.modules])"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
    from sm_ctl.main import app

    result = CliRunner().invoke(app, ["run", "-t", "all"])
    assert result.exit_code == 2
    assert "nothing to run" in result.output
