"""``up`` serves the web client: a supervised child on 127.0.0.1, port + 2, in the banner."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import httpx

from sm_ctl import banner
from sm_ctl.instance import UpProcess, free_port_pair
from sm_ctl.launcher import Launch, UpOptions, endpoints
from sm_ctl.supervisor import Supervisor

BANNER = """\
Enrollment key (for nodes):   sme1.a.b
Secret key (for the client):  sms1.a.b
CA fingerprint (SHA-256):     AB:CD
API:                          https://127.0.0.1:8700
Gateway:                      wss://127.0.0.1:8701/agent/ws
{web}Processes:                    web 10, api 11
Server Manager is ready (in 2.00 s). Press Ctrl-C to stop it.
"""


def test_the_banner_carries_the_web_clients_url() -> None:
    line = banner.line(banner.WEB, "http://127.0.0.1:8702") + "\n"
    parsed = banner.parse(BANNER.format(web=line).splitlines())
    assert parsed.web_url == "http://127.0.0.1:8702"
    assert parsed.processes["web"] == 10
    assert banner.parse(BANNER.format(web="").splitlines()).web_url == ""
    failed = banner.line(banner.WEB, "not running: port in use (log: /x/web.log)") + "\n"
    assert banner.parse(BANNER.format(web=failed).splitlines()).web_url == ""


def test_free_port_pair_leaves_room_for_the_web_client() -> None:
    port = free_port_pair()
    for candidate in (port, port + 1, port + 2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", candidate))


def test_the_web_client_is_a_loopback_child_pointed_at_the_core(tmp_path: Path) -> None:
    options = UpOptions(data_dir=tmp_path, host="0.0.0.0", port=9100, names=("core.example",))
    launch = Launch(options, Supervisor(), asyncio.Event(), 0.0)
    spec = launch.web_spec()
    assert spec.name == "web"
    assert not spec.essential  # the core runs on without it
    assert spec.argv[:3] == [sys.executable, "-m", "sm_client.main"]
    argv = spec.argv[3:]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"  # never on every address
    assert argv[argv.index("--port") + 1] == "9102"
    assert argv[argv.index("--server") + 1] == "https://core.example:9100"
    assert spec.env["FLET_FORCE_WEB_SERVER"] == "1"
    assert endpoints(options).web == "http://127.0.0.1:9102"


def test_up_serves_the_web_client_and_stops_it(tmp_path: Path) -> None:
    port = free_port_pair()
    up = UpProcess.start(tmp_path / "data", port, "--no-agent")
    try:
        ready = up.wait_ready(90)
        assert ready.web_url == f"http://127.0.0.1:{port + 2}"
        assert "web" in ready.processes
        page = httpx.get(ready.web_url + "/", timeout=10)
        assert page.status_code == 200
        assert "flet.noCdn=true" in page.text  # loads with no internet access
    finally:
        assert up.stop() == 0
    try:
        httpx.get(f"http://127.0.0.1:{port + 2}/", timeout=2)
    except httpx.HTTPError:
        pass
    else:
        raise AssertionError("the web client outlived up")
