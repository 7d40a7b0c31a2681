"""The web client in Chromium, against ``up`` with real agents: the issue's eight scenarios
and a screenshot tour of every screen at 1440x900 and 390x844, light and dark.

Controls are found by their accessibility identifiers (:mod:`sm_client.views.ids`);
texts are compared with the client's own locale strings. One ``up`` and one
browser for the module, a fresh browser context (storage, size, colour scheme)
per test. Screenshots go to ``$SM_ARTIFACTS/screens`` (``test-artifacts/screens``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from sm_client.locales import audit as audit_text
from sm_client.locales import connect as connect_text
from sm_client.locales import settings as settings_text
from sm_client.locales import shell as shell_text
from sm_client.views import ids
from tests.live_core import wait_for
from tests.web_client import (
    PHONE,
    PROD_NAME,
    SIZES,
    SVC_NAME,
    THEMES,
    VIEWER,
    WIDE,
    Client,
    WebFleet,
    artifacts_dir,
    launch,
    new_secret_like,
    web_fleet,
)

# The first test also waits for the module's up, agents and web client.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebFleet]:
    with web_fleet(tmp_path_factory.mktemp("web")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def client(browser: Browser, fleet: WebFleet) -> Iterator[Client]:
    page = Client(browser, fleet, WIDE)
    try:
        yield page
    finally:
        page.close()


def number(text: str) -> int:
    """The first whole number in ``text``."""
    match = re.search(r"\d+", text)
    assert match, f"no number in {text!r}"
    return int(match.group())


def points(text: str) -> int:
    """N of a chart's ``points: N`` label (0 when it says nothing)."""
    match = re.search(r"points: (\d+)", text)
    return int(match.group(1)) if match else 0


def hex_digits(text: str) -> str:
    return re.sub(r"[^0-9a-f]", "", text.lower())


# --- 1. connect --------------------------------------------------------------------


def test_connect_with_the_secret_key_and_each_failure_has_its_message(
    client: Client, fleet: WebFleet
) -> None:
    client.open("/")
    client.wait_id(ids.screen("connect"), timeout=30)
    client.screenshot("connect")

    client.connect_with_key(
        new_secret_like(fleet.secret_key, fingerprint=False), expect_shell=False
    )
    wrong_key = client.wait_text(ids.CONNECT_ERROR, connect_text.EN["connect.failure.wrong_key"])
    client.screenshot("connect-wrong-key")

    client.connect_with_key(new_secret_like(fleet.secret_key, fingerprint=True), expect_shell=False)
    mismatch = client.wait_text(
        ids.CONNECT_ERROR, connect_text.EN["connect.failure.certificate_mismatch"]
    )
    assert connect_text.EN["connect.failure.wrong_key"] not in mismatch
    assert wrong_key != mismatch
    client.screenshot("connect-certificate-mismatch")

    client.connect_with_key()
    assert not client.has(ids.CONNECT_ERROR)


# --- 2. dashboard ------------------------------------------------------------------


def test_dashboard_shows_the_enrolled_agents_online(client: Client, fleet: WebFleet) -> None:
    client.sign_in()
    online = len(fleet.api.nodes(status="online"))
    assert online == 3
    client.wait_text(ids.DASH_ONLINE, lambda text: number(text) == online)
    client.wait_text(ids.DASH_OFFLINE, lambda text: number(text) == 0)
    client.wait_id(ids.DASH_CPU)
    client.wait_id(ids.DASH_MEMORY)
    top = client.wait_text(ids.DASH_TOP_NODES, PROD_NAME)
    assert SVC_NAME in top


# --- 3. nodes: label filter, node detail, 1 h chart --------------------------------


def test_filter_nodes_by_label_open_one_and_its_hour_chart_has_data(
    client: Client, fleet: WebFleet
) -> None:
    client.sign_in()
    client.go("nodes")
    for node_id in fleet.node_ids:
        client.wait_id(ids.node_row(node_id))
    client.type(ids.NODES_FILTER_LABEL, "env=prod", enter=True)
    client.wait_text(ids.NODES_COUNT, lambda text: number(text) == 1)
    wait_for(
        lambda: (
            not client.has(ids.node_row(fleet.local)) and not client.has(ids.node_row(fleet.svc))
        ),
        10,
        "the other nodes filtered out",
    )
    assert client.has(ids.node_row(fleet.prod))
    client.screenshot("nodes-filtered")

    client.tap_to(ids.node_row(fleet.prod), ids.screen("node"))
    client.wait_text(ids.NODE_TITLE, PROD_NAME)
    client.click(ids.node_range("1h"))
    chart = client.wait_text(
        ids.node_chart("cpu"),
        lambda text: points(text) > 0,
        timeout=20,
    )
    assert re.search(r"points: [1-9]", chart), chart


# --- 4. composer: echo hello on two nodes, live -------------------------------------


def test_run_echo_hello_on_two_nodes_from_the_composer(client: Client, fleet: WebFleet) -> None:
    targets = [fleet.prod, fleet.svc]
    client.sign_in()
    client.go("commands")
    client.tap_to(ids.COMMANDS_NEW, ids.COMPOSER_SCRIPT)
    for node_id in targets:
        client.wait_id(ids.composer_node(node_id))
    client.wait_loaded()
    client.settle(1.0)  # the picker's first loads re-render it
    for picked, node_id in enumerate(targets, start=1):
        client.check(ids.composer_node(node_id))
        client.wait_text(ids.COMPOSER_MATCHED, lambda text, n=picked: number(text) == n)  # type: ignore[misc]
    client.type(ids.COMPOSER_SCRIPT, "echo hello")
    client.screenshot("composer-filled")
    before = {c["id"] for c in fleet.api.commands()}
    client.click(ids.COMPOSER_RUN)

    for node_id in targets:
        client.wait_text(ids.execution_output(node_id), "hello", timeout=30)
        client.wait_text(ids.execution_row(node_id), lambda text: bool(re.search(r"\b0\b", text)))
    assert not client.has(ids.execution_row(fleet.local))
    client.screenshot("command-live")

    created = [c for c in fleet.api.commands() if c["id"] not in before]
    assert len(created) == 1, created
    command = fleet.api.finished(created[0]["id"])
    assert sorted(x["node_id"] for x in command["executions"]) == sorted(targets)
    assert {(x["state"], x["exit_code"]) for x in command["executions"]} == {("succeeded", 0)}


# --- 5. service restart from node detail, audited ----------------------------------


def test_restart_a_service_from_node_detail_is_audited_and_verified(
    client: Client, fleet: WebFleet
) -> None:
    restart = "--no-pager restart nginx.service"
    assert restart not in fleet.calls.read_text()
    client.sign_in()
    client.go("nodes")
    client.tap_to(ids.node_row(fleet.svc), ids.screen("node"))
    # a `service list` command's round trip through the core and the agent
    client.wait_text(ids.NODE_SERVICES, "nginx.service", timeout=60)
    client.screenshot("node-services")
    client.tap_to(ids.service_action("restart", "nginx.service"), ids.CONFIRM_OK)
    client.click(ids.CONFIRM_OK)
    wait_for(lambda: restart in fleet.calls.read_text(), 30, "systemctl restart nginx.service")

    records = [
        r
        for r in fleet.api.audit()
        if "nginx" in str(r) and "restart" in str(r) and r.get("action", "").startswith("command")
    ]
    assert records, fleet.api.audit()[-5:]
    client.go("audit")
    client.wait_id(ids.AUDIT_LIST)
    client.wait_id(ids.audit_row(int(records[0]["seq"])), timeout=20)
    ok = audit_text.EN["audit.verify_ok"].split("{")[0]  # "ok — "
    verdicts = (
        ok,
        audit_text.EN["audit.verify_bad"].split("{")[0],
        audit_text.EN["audit.verify_failed"],
    )
    client.click(ids.AUDIT_VERIFY)
    verdict = client.wait_text(
        ids.AUDIT_VERIFY_RESULT, lambda text: any(v in text for v in verdicts), timeout=30
    )
    assert fleet.api.get("/api/v1/audit/verify")["ok"] is True
    assert ok in verdict, verdict
    client.screenshot("audit-verified")


# --- 6. viewer: no run, no admin ----------------------------------------------------


def test_a_viewer_signs_in_with_a_password_and_is_offered_no_run_or_admin_action(
    client: Client, fleet: WebFleet
) -> None:
    client.open("/")
    client.wait_id(ids.screen("connect"), timeout=30)
    client.click(ids.CONNECT_MODE_PASSWORD)
    client.wait_id(ids.CONNECT_USERNAME)
    client.settle(0.5)
    client.type(ids.CONNECT_USERNAME, VIEWER[0])
    client.type(ids.CONNECT_PASSWORD, VIEWER[1])
    client.click(ids.CONNECT_SUBMIT)
    shown = client.wait_text(ids.CONNECT_FINGERPRINT, lambda text: len(hex_digits(text)) >= 32)
    assert hex_digits(fleet.ready.fingerprint)[:32] in hex_digits(shown), shown
    client.screenshot("connect-fingerprint")
    client.click(ids.CONNECT_TRUST)
    client.wait_id(ids.screen("dashboard"), timeout=30)

    assert not client.has(ids.nav("admin"))
    client.go("nodes")
    client.wait_id(ids.node_row(fleet.svc))
    assert not client.offered(ids.NODES_BULK_RUN)
    client.tap_to(ids.node_row(fleet.svc), ids.screen("node"))
    client.wait_id(ids.NODE_TITLE)
    client.wait_loaded()
    assert not client.offered(ids.NODE_RUN)
    assert not client.offered(ids.service_action("restart", "nginx.service"))
    client.go("commands")
    client.wait_loaded()
    assert not client.offered(ids.COMMANDS_NEW)
    client.screenshot("viewer-commands")


# --- 7. dark mode and Chinese ------------------------------------------------------


def test_dark_mode_and_chinese_change_the_look_and_the_texts(
    client: Client, fleet: WebFleet
) -> None:
    client.sign_in()
    client.go("settings")
    client.click(ids.settings_theme("light"))
    light = client.wait_luminance(lambda value: value > 0.6)
    client.click(ids.settings_theme("dark"))
    dark = client.wait_luminance(lambda value: value < 0.35)
    assert light > 0.6 > 0.35 > dark, (light, dark)

    english = client.text()
    assert shell_text.EN["shell.nav.nodes"] in english
    assert settings_text.EN["settings.title"] in english
    client.click(ids.settings_language("zh"))
    client.wait_page_text(shell_text.ZH["shell.nav.nodes"])
    chinese = client.text()
    for key in ("shell.nav.dashboard", "shell.nav.commands", "shell.nav.settings"):
        assert shell_text.ZH[key] in chinese, key
        assert shell_text.EN[key] not in chinese, key
    assert settings_text.ZH["settings.theme.dark"] in chinese
    client.screenshot("settings-zh", theme="dark")

    client.go("nodes")
    client.wait_id(ids.node_row(fleet.prod))
    assert shell_text.EN["shell.nav.nodes"] not in client.text()


# --- 8. phone: bottom bar, every screen reachable -----------------------------------


def test_on_a_phone_the_bottom_bar_reaches_every_screen(client: Client, fleet: WebFleet) -> None:
    client.sign_in(PHONE)
    client.wait_id(ids.NAV_BAR)
    assert not client.has(ids.NAV_RAIL)
    overflow: dict[str, list[str]] = {}
    for screen in ids.SCREENS:
        client.go(screen)
        client.wait_loaded()
        client.settle(0.3)
        if found := client.overflowing():
            overflow[screen] = found
    assert not overflow, f"controls past the right edge at 390 px: {overflow}"


# --- the screenshot tour ----------------------------------------------------------


def visit_every_screen(client: Client, fleet: WebFleet, theme: str) -> list[str]:
    """Screenshots of every screen in ``theme``; what failed on the way (the tour goes on)."""
    problems: list[str] = []

    def shoot(name: str, *steps: object) -> None:
        try:
            for step in steps:
                if callable(step):
                    step()
            client.wait_loaded()
            client.settle(0.6)
        except AssertionError as exc:
            problems.append(f"{name}: {str(exc).splitlines()[0]}")
        client.screenshot(name)

    client.open("/")
    shoot("connect", lambda: client.wait_id(ids.screen("connect"), timeout=30))
    client.connect_with_key()
    client.go("settings")
    client.click(ids.settings_theme(theme))
    shoot("settings")
    client.go("dashboard")
    shoot("dashboard", lambda: client.wait_text(ids.DASH_ONLINE, lambda t: number(t) == 3))
    client.go("nodes")
    shoot("nodes", lambda: client.wait_id(ids.node_row(fleet.svc)))
    shoot(
        "node",
        lambda: client.tap_to(ids.node_row(fleet.svc), ids.screen("node")),
        lambda: client.wait_text(ids.node_chart("cpu"), "points:", timeout=20),
    )
    client.go("commands")
    shoot("commands", lambda: client.wait_id(ids.command_row(fleet.command_id)))
    shoot(
        "command",
        lambda: client.tap_to(ids.command_row(fleet.command_id), ids.execution_output(fleet.svc)),
        lambda: client.wait_text(ids.execution_output(fleet.svc), "Linux"),
    )
    client.go("commands")
    shoot(
        "composer",
        lambda: client.tap_to(ids.COMMANDS_NEW, ids.COMPOSER_SCRIPT),
    )
    client.go("audit")
    shoot("audit", lambda: client.wait_id(ids.AUDIT_LIST))
    client.go("admin")
    shoot("admin", lambda: client.wait_id(ids.ADMIN_TAB_USERS))
    return problems


@pytest.mark.timeout(1200)  # 40 screenshots; a loaded CI machine took over 600 s
def test_screenshot_tour_of_every_screen(browser: Browser, fleet: WebFleet) -> None:
    problems: list[str] = []
    written: list[Path] = []
    began = time.monotonic()
    for size in SIZES:
        for theme in THEMES:
            client = Client(browser, fleet, size, theme=theme)
            try:
                problems += [
                    f"{size[0]}x{size[1]} {theme} {p}"
                    for p in visit_every_screen(client, fleet, theme)
                ]
                shots = artifacts_dir() / "screens"
                written += sorted(shots.glob(f"*-{size[0]}x{size[1]}-{theme}.png"))
            finally:
                client.close()
    print(f"tour: {len(written)} screenshots in {time.monotonic() - began:.0f} s")
    assert not problems, "\n".join(problems)
