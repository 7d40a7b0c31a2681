"""``smctl nodes``, ``node show``, ``audit`` and ``run``'s errors against a real ``smctl up``.

One core for the module (its local agent is the enrolled node). The CLI runs
as a real process, once finding the core through the data directory like an
operator on the core's machine, once through ``SM_SERVER``/``SM_SECRET_KEY``
like one elsewhere (its CA pinned by the key, kept under XDG_CONFIG_HOME).
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sm_ctl import banner
from sm_ctl.instance import UpProcess, free_port_pair
from sm_ctl.local_agent import node_id as local_node_id

pytestmark = pytest.mark.slow


class Core:
    def __init__(self, up: UpProcess, ready: banner.Banner, config_home: Path) -> None:
        self.up = up
        self.ready = ready
        self.config_home = config_home

    @property
    def node_id(self) -> str:
        return local_node_id(self.up.data)

    def smctl(
        self, *args: str, remote: bool = False, **env: str
    ) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
        base["XDG_CONFIG_HOME"] = str(self.config_home)
        base["COLUMNS"] = "200"
        if remote:
            base |= {"SM_SERVER": self.ready.api_url, "SM_SECRET_KEY": self.ready.secret_key}
        else:
            base["SM_DATA_DIR"] = str(self.up.data.root)
        return subprocess.run(
            [sys.executable, "-m", "sm_ctl", *args],
            capture_output=True,
            text=True,
            env=base | env,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Core]:
    root = tmp_path_factory.mktemp("core")
    up = UpProcess.start(root / "data", free_port_pair(), env={"SM_VALIDATE_RESPONSES": "true"})
    try:
        yield Core(up, up.wait_ready(), root / "config")
    finally:
        up.stop()


def clean(result: subprocess.CompletedProcess[str]) -> str:
    """The output, asserting no traceback escaped."""
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text
    return text


@pytest.mark.parametrize("remote", [False, True], ids=["local-data-dir", "server-and-key"])
def test_nodes_lists_the_enrolled_node(core: Core, remote: bool) -> None:
    result = core.smctl("nodes", remote=remote)
    assert result.returncode == 0, clean(result)
    assert core.node_id in result.stdout
    assert "online" in result.stdout
    assert "1 node" in result.stdout
    offline = core.smctl("nodes", "--status", "offline", remote=remote)
    assert offline.returncode == 0, clean(offline)
    assert core.node_id not in offline.stdout
    assert "0 nodes" in offline.stdout


def test_nodes_filters_go_to_the_api_and_its_problems_are_shown(core: Core) -> None:
    bad = core.smctl("nodes", "-t", "role in (db")
    assert bad.returncode == 1
    assert "Bad Request" in clean(bad)
    assert "position" in bad.stderr
    missing = core.smctl("nodes", "--group", "nosuchgroup")
    assert missing.returncode == 1
    assert "Not Found" in clean(missing)


def test_node_show_prints_facts_and_status(core: Core) -> None:
    result = core.smctl("node", "show", core.node_id)
    assert result.returncode == 0, clean(result)
    assert core.node_id in result.stdout
    assert "facts.hostname" in result.stdout
    assert "online" in result.stdout
    unknown = core.smctl("node", "show", "0b6f4a8e-3c1d-4a57-9d3e-2f1a7c9b5e10")
    assert unknown.returncode == 1
    assert "Not Found" in clean(unknown)


def test_audit_verify_says_ok_and_list_prints_json_records(core: Core) -> None:
    verify = core.smctl("audit", "verify", remote=True)
    assert verify.returncode == 0, clean(verify)
    assert verify.stdout.startswith("ok: ")
    listing = core.smctl("audit", "list", "--json", "--limit", "5")
    assert listing.returncode == 0, clean(listing)
    records = [json.loads(line) for line in listing.stdout.splitlines()]
    assert records, "the local agent's enrollment is on the chain"
    for record in records:
        assert {"seq", "at", "actor", "action", "hash"} <= set(record)


def test_a_wrong_secret_key_is_refused_clearly(core: Core) -> None:
    fingerprint, _secret = core.ready.secret_key.split(".")[1:]
    wrong = f"sms1.{fingerprint}.{'A' * 43}"
    result = core.smctl("nodes", remote=True, SM_SECRET_KEY=wrong)
    assert result.returncode == 1
    assert "refused the secret key" in clean(result)


def test_another_cores_key_fails_the_trust_check(core: Core) -> None:
    other = f"sms1.{'B' * 43}.{'C' * 43}"
    result = core.smctl("audit", "verify", remote=True, SM_SECRET_KEY=other)
    assert result.returncode == 1
    assert "does not match the secret key" in clean(result)


def test_a_server_that_does_not_answer_is_named(core: Core) -> None:
    port = free_port_pair()
    result = core.smctl("nodes", remote=True, SM_SERVER=f"https://127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in clean(result)


def test_run_refuses_bad_input_before_and_at_the_api(core: Core) -> None:
    nothing = core.smctl("run", "--", "true")
    assert nothing.returncode == 2
    assert "say which nodes" in clean(nothing)
    both = core.smctl("run", "--all", "--service", "nginx", "restart", "--", "true")
    assert both.returncode == 2
    assert "exactly one" in clean(both)
    selector = core.smctl("run", "-t", "role in (db", "--", "true")
    assert selector.returncode == 1
    assert "position" in clean(selector)
    empty = core.smctl("run", "-t", "role=nothing-has-this", "--", "true")
    assert empty.returncode == 1
    assert "No node matches" in clean(empty) or "no node" in empty.stderr.lower()


def test_the_ca_kept_for_the_key_verifies_the_core(core: Core) -> None:
    """What the trust bootstrap kept (under XDG_CONFIG_HOME) is the core's CA."""
    ca = core.config_home / "server-manager" / "ca"
    assert any(ca.glob("*.pem"))
    pinned = next(ca.glob("*.pem"))
    response = httpx.get(
        core.ready.api_url + "/healthz",
        verify=ssl.create_default_context(cafile=str(pinned)),
        timeout=10,
    )
    assert response.status_code == 200
