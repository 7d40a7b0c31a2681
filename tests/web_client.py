"""The web client in Chromium against a real ``up`` with real agents: the browser tests' harness.

:func:`web_fleet` starts ``smctl up`` (its local agent, and the web client it
serves on port P+2, printed as ``Web client:`` in the banner) and two more
``sm-agent`` processes:

- ``prod``: enrolled with a token carrying the label ``env=prod`` and the group
  ``web``; shell allowed;
- ``svc``: shell and service control allowed for a few units; its
  ``systemctl`` and ``journalctl`` are recording scripts first on its PATH
  (every call is appended to ``calls``; ``list-units`` answers with a plausible
  unit table, ``journalctl`` with a few log lines);

plus a viewer user (password sign-in) and one finished command, so history and
live view have something to show.

:class:`Client` drives one Chromium page through Flutter's accessibility tree:
``open`` loads the app (every request not to 127.0.0.1 is aborted), turns the
semantics DOM on and finds controls by the identifiers of
:mod:`sm_client.views.ids` (``[flt-semantics-identifier='...']``).
``screenshot`` writes ``<artifacts>/screens/<name>-<w>x<h>-<theme>.png``;
``<artifacts>`` is ``$SM_ARTIFACTS`` or ``test-artifacts`` in the checkout.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from playwright.sync_api import Browser, BrowserContext, Locator, Page, Route

from sm_ctl import banner
from sm_ctl.instance import UpExited, UpProcess, free_port_pair
from sm_shared.datadir import DataDir
from tests.live_core import Agent, Api, wait_for

REPO: Final = Path(__file__).resolve().parents[1]
CHROMIUM: Final = "/usr/bin/chromium"
SM_CLIENT: Final = str(Path(sys.executable).with_name("sm-client"))

WIDE: Final = (1440, 900)
PHONE: Final = (390, 844)
SIZES: Final = (WIDE, PHONE)
THEMES: Final = ("light", "dark")

# Response validation on; heartbeats every second so charts fill quickly.
STRICT: Final = {
    "SM_VALIDATE_RESPONSES": "true",
    "SM_HEARTBEAT_INTERVAL": "1",
    "BROWSER": "/bin/true",
    "FLET_FORCE_WEB_SERVER": "1",
}

VIEWER: Final = ("vera", "viewer-password-1")
PROD_NAME: Final = "web-prod-1"
SVC_NAME: Final = "edge-svc-1"
SERVICE_UNITS: Final = ("nginx.service", "app-*", "redis-server.service")

UNIT_TABLE: Final = """\
UNIT                   LOAD   ACTIVE   SUB     DESCRIPTION
app-worker.service     loaded active   running Application worker
cron.service           loaded active   running Regular background program processing daemon
nginx.service          loaded active   running A high performance web server and a reverse proxy server
redis-server.service   loaded inactive dead    Advanced key-value store

LOAD   = Reflects whether the unit definition was properly loaded.
ACTIVE = The high-level unit activation state, i.e. generalization of SUB.
SUB    = The low-level unit activation state, values depend on unit type.

4 loaded units listed.
To show all installed unit files use 'systemctl list-unit-files'.
"""

SYSTEMCTL: Final = """#!/bin/sh
printf '%s\\n' "$*" >> "{calls}"
case "$*" in
  *list-units*) cat "{table}" ;;
  *" status "*) echo "* $(echo "$*" | sed 's/.* //') - recorded unit"; echo "     Active: active (running)" ;;
  *) echo "recorded $*" ;;
esac
"""

JOURNALCTL: Final = """#!/bin/sh
printf 'journalctl %s\\n' "$*" >> "{calls}"
for i in 1 2 3 4 5; do
  echo "2026-11-28T22:0$i:00+0000 edge-svc-1 nginx[4242]: 10.0.0.$i - - \\"GET /healthz HTTP/1.1\\" 200 2"
done
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def recording_bin(root: Path) -> tuple[Path, Path]:
    """A directory holding recording ``systemctl`` and ``journalctl``; (bin dir, calls file)."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    calls = root / "calls"
    calls.touch()
    table = root / "units.txt"
    table.write_text(UNIT_TABLE)
    for name, text in (("systemctl", SYSTEMCTL), ("journalctl", JOURNALCTL)):
        program = bin_dir / name
        program.write_text(text.format(calls=calls, table=table))
        program.chmod(program.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir, calls


class AdminApi(Api):
    """The admin REST client of :mod:`tests.live_core` with what the browser tests set up."""

    def post(self, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        assert response.status_code == status, (path, response.status_code, response.text)
        answer: dict[str, Any] = response.json()
        return answer

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def rename(self, node_id: str, name: str) -> None:
        response = self.http.patch(f"/api/v1/nodes/{node_id}", json={"name": name})
        assert response.status_code == 200, response.text

    def run(self, node_ids: list[str], script: str) -> str:
        body = {"target": {"node_ids": node_ids}, "kind": "shell", "shell": {"script": script}}
        command: dict[str, Any] = self.post("/api/v1/commands", body, status=202)
        return str(command["id"])

    def command(self, command_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.get(f"/api/v1/commands/{command_id}")
        return answer

    def finished(self, command_id: str, within: float = 30) -> dict[str, Any]:
        final = {"succeeded", "failed", "timed_out", "cancelled", "expired", "refused"}
        wait_for(
            lambda: all(x["state"] in final for x in self.command(command_id)["executions"]),
            within,
            f"command {command_id} to finish",
            step=0.2,
        )
        return self.command(command_id)

    def commands(self, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("/api/v1/commands", **params)["items"]
        return items

    def audit(self, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("/api/v1/audit", limit=500, **params)["items"]
        return items


@dataclass
class WebFleet:
    """A running ``up``, its agents and the web client's URL."""

    up: UpProcess
    ready: banner.Banner
    api: AdminApi
    web_url: str
    local: str  # up's own agent
    prod: str  # labelled env=prod, group web
    svc: str  # service control with the recording systemctl
    calls: Path  # what the recording systemctl/journalctl were asked
    command_id: str  # a finished shell command on every node
    agents: dict[str, Agent] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return self.ready.api_url

    @property
    def secret_key(self) -> str:
        return self.ready.secret_key

    @property
    def node_ids(self) -> list[str]:
        return [self.local, self.prod, self.svc]

    def name(self, node_id: str) -> str:
        return str(self.api.node(node_id)["name"])

    def output(self) -> str:
        """What up printed so far, and the tail of the web client's log."""
        with contextlib.suppress(UpExited):
            self.up.read_until(lambda _line: False, within=0.05)
        text = self.up.output[-4000:]
        for log in sorted((self.up.data.root / "logs").glob("web*")):
            text += f"\n--- {log.name} ---\n" + log.read_text(errors="replace")[-8000:]
        return text


@contextlib.contextmanager
def web_fleet(root: Path) -> Iterator[WebFleet]:
    up = UpProcess.start(root / "data", free_port_pair(), env=STRICT)
    agents: dict[str, Agent] = {}
    api: AdminApi | None = None
    try:
        ready = up.wait_ready()
        api = AdminApi(DataDir(root / "data"), ready.api_url)
        wait_for(lambda: len(api.nodes(status="online")) == 1, 30, "up's local agent online")
        local = api.nodes()[0]["id"]

        api.post("/api/v1/groups", {"name": "web", "description": "Public web servers"})
        token = api.post(
            "/api/v1/enrollment-tokens",
            {"ttl": 3600, "max_uses": 1, "group": "web", "labels": {"env": "prod", "tier": "web"}},
        )["token"]
        prod_agent = Agent(root / "prod", ready.api_url, token, settings=["allow_shell = true"])
        prod_agent.start()
        prod = prod_agent.node_id()
        agents[prod] = prod_agent

        bin_dir, calls = recording_bin(root / "svc")
        units = ", ".join(f'"{unit}"' for unit in SERVICE_UNITS)
        svc_agent = Agent(
            root / "svc",
            ready.api_url,
            ready.enrollment_key,
            settings=[
                "allow_shell = true",
                "allow_service = true",
                "allow_logs = true",
                f"service_units = [{units}]",
            ],
            env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
        )
        svc_agent.start()
        svc = svc_agent.node_id()
        agents[svc] = svc_agent
        wait_for(lambda: len(api.nodes(status="online")) == 3, 30, "three nodes online")
        api.rename(prod, PROD_NAME)
        api.rename(svc, SVC_NAME)
        api.post("/api/v1/users", {"username": VIEWER[0], "password": VIEWER[1], "role": "viewer"})
        command_id = api.run([local, prod, svc], "uname -sr; uptime")
        api.finished(command_id)

        web_url = ready.web_url  # up serves the web client (port P+2)
        assert web_url, f"up printed no web client URL:\n{up.output}"
        yield WebFleet(
            up, ready, api, web_url.rstrip("/"), local, prod, svc, calls, command_id, agents
        )  # fmt: skip
    finally:
        for agent in agents.values():
            if agent.process is not None and agent.process.poll() is None:
                agent.stop()
        if api is not None:
            api.close()
        up.stop()


# --- the browser -------------------------------------------------------------------


def artifacts_dir() -> Path:
    return Path(os.environ.get("SM_ARTIFACTS") or REPO / "test-artifacts")


def launch(playwright: Any) -> Browser:
    browser: Browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
    )
    return browser


def _loopback_only(route: Route) -> None:
    if route.request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1")):
        route.continue_()
    else:
        route.abort()


def connect_text_en(key: str) -> str:
    from sm_client.locales import connect

    return connect.EN[key]


def ident(identifier: str) -> str:
    return f"[flt-semantics-identifier='{identifier}']"


# What a click on an identified control reaches: the control itself or the
# first tappable node inside the Semantics wrapper.
_TAPPABLE: Final = (
    "xpath=descendant-or-self::*[@flt-tappable or @role='button' or @role='checkbox'"
    " or @role='tab' or @role='radio' or @role='switch' or @role='menuitem' or @role='link']"
)

_LUMINANCE_JS: Final = """async (data) => {
  const image = new Image();
  image.src = "data:image/png;base64," + data;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.width; canvas.height = image.height;
  const g = canvas.getContext("2d");
  g.drawImage(image, 0, 0);
  const pixels = g.getImageData(0, 0, image.width, image.height).data;
  let sum = 0, n = 0;
  for (let i = 0; i < pixels.length; i += 4 * 7) {
    sum += 0.2126 * pixels[i] + 0.7152 * pixels[i + 1] + 0.0722 * pixels[i + 2]; n++;
  }
  return sum / n / 255;
}"""

# An element's texts: its aria-label, its descendants' aria-labels, its inner text.
_TEXTS_JS: Final = """(e) => {
  const parts = [];
  const add = (t) => { t = (t || "").trim(); if (t && !parts.includes(t)) parts.push(t); };
  add(e.getAttribute("aria-label"));
  for (const d of e.querySelectorAll("[aria-label]")) add(d.getAttribute("aria-label"));
  add(e.innerText);
  return parts.join("\\n");
}"""

# Semantics nodes with text or a role whose box reaches past the window's right edge.
_OVERFLOW_JS: Final = """(width) => {
  const found = [];
  for (const e of document.querySelectorAll("flt-semantics")) {
    const r = e.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) continue;
    const text = (e.getAttribute("aria-label") || e.innerText || "").trim();
    if (!text && !e.getAttribute("role")) continue;
    if (r.right > width + 1 && r.left < width) {
      found.push(`${e.getAttribute("flt-semantics-identifier") || e.getAttribute("role") || ""}`
        + ` "${text.slice(0, 40).replace(/\\n/g, " ")}" right=${Math.round(r.right)}`);
    }
  }
  return found;
}"""


class Client:
    """One browser page on the web client."""

    def __init__(self, browser: Browser, fleet: WebFleet, size: tuple[int, int] = WIDE, *,
                 theme: str = "light") -> None:  # fmt: skip
        self.fleet = fleet
        self.size = size
        self.theme = theme
        self.context: BrowserContext = browser.new_context(
            viewport={"width": size[0], "height": size[1]},
            color_scheme="dark" if theme == "dark" else "light",
            locale="en-US",
        )
        self.context.set_default_timeout(30_000)
        self.page: Page = self.context.new_page()
        self.page.route("**/*", _loopback_only)
        self.console: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def close(self) -> None:
        self.context.close()

    # --- loading -------------------------------------------------------------------
    def open(self, path: str = "/", size: tuple[int, int] | None = None) -> None:
        """Load the app at ``path``, wait for Flutter and turn the semantics DOM on."""
        if size is not None:
            self.resize(size)
        self.page.goto(self.fleet.web_url + path, timeout=60_000)
        self.page.wait_for_selector("#loading", state="detached", timeout=60_000)
        self.enable_semantics()

    def enable_semantics(self) -> None:
        placeholder = self.page.locator("flt-semantics-placeholder")
        placeholder.wait_for(state="attached", timeout=15_000)
        placeholder.dispatch_event("click")
        self.page.wait_for_selector("flt-semantics", state="attached", timeout=15_000)

    def resize(self, size: tuple[int, int]) -> None:
        self.size = size
        self.page.set_viewport_size({"width": size[0], "height": size[1]})

    # --- finding -------------------------------------------------------------------
    def by_id(self, identifier: str) -> Locator:
        return self.page.locator(ident(identifier))

    def has(self, identifier: str) -> bool:
        return self.by_id(identifier).count() > 0

    def offered(self, identifier: str) -> bool:
        """Whether the identified action is shown and enabled."""
        if not self.has(identifier):
            return False
        target = self.by_id(identifier).first.locator(_TAPPABLE).first
        if target.count() == 0:
            target = self.by_id(identifier).first
        return target.get_attribute("aria-disabled") != "true"

    def wait_id(self, identifier: str, timeout: float = 15) -> Locator:
        locator = self.by_id(identifier).first
        try:
            locator.wait_for(state="attached", timeout=timeout * 1000)
        except Exception as exc:
            raise AssertionError(
                self.explain(f"no control {identifier!r} within {timeout:g} s")
            ) from exc
        return locator

    def wait_gone(self, identifier: str, timeout: float = 15) -> None:
        self.by_id(identifier).first.wait_for(state="detached", timeout=timeout * 1000)

    def label(self, identifier: str) -> str:
        """The identified control's texts: its label, its descendants' labels, its inner text.

        A Semantics' label shows up in the node's inner text, or (for selectable
        text, a text field) as the aria-label of an element inside it.
        """
        texts: str = self.wait_id(identifier).evaluate(_TEXTS_JS)
        return texts

    def label_now(self, identifier: str) -> str | None:
        """:meth:`label` of the control if it is there now; None if it is not (no waiting:
        a screen being replaced may drop it between two looks)."""
        found = self.by_id(identifier)
        if found.count() == 0:
            return None
        try:
            return str(found.first.evaluate(_TEXTS_JS, timeout=1_000))
        except Exception:  # it went away between the count and the read
            return None

    def wait_text(
        self, identifier: str, check: str | Callable[[str], bool], timeout: float = 15
    ) -> str:
        """The identified control's text once it contains ``check`` (or ``check(text)`` holds)."""
        test: Callable[[str], bool] = (
            (lambda text: check in text) if isinstance(check, str) else check
        )
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            text = self.label_now(identifier)
            if text is not None:
                last = text
                with contextlib.suppress(Exception):  # a check may assert on a passing text
                    if test(text):
                        return text
            time.sleep(0.1)
        raise AssertionError(
            self.explain(
                f"{identifier!r} never showed {check!r} within {timeout:g} s; last: {last!r}"
            )
        )

    def text(self) -> str:
        """Every text of the semantics tree."""
        host = self.page.locator("flt-semantics-host")
        if not host.count():
            return ""
        texts: str = host.first.evaluate(_TEXTS_JS)
        return texts

    def wait_page_text(self, needle: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            time.sleep(0.1)
        raise AssertionError(self.explain(f"the page never showed {needle!r}"))

    # --- acting --------------------------------------------------------------------
    def click(self, identifier: str) -> None:
        """Tap the identified control with the pointer, once it is inside the window.

        Flutter hit-tests the pointer's position, and a control scrolled out of
        the window has a semantics box where something else is drawn: scroll it
        in first (a DOM scroll of its scrollable ancestor is Flutter's scroll
        action) and wait until its box holds still inside the window.
        """
        target = self.wait_id(identifier).locator(_TAPPABLE).first
        if target.count() == 0:
            target = self.by_id(identifier).first
        if not self._inside(target):
            with contextlib.suppress(Exception):
                target.scroll_into_view_if_needed(timeout=5_000)
            deadline = time.monotonic() + 5
            last = None
            while time.monotonic() < deadline:
                self.page.wait_for_timeout(150)
                box = target.bounding_box()
                if box is not None and box == last and self._inside(target):
                    break
                last = box
        target.click()

    def checked(self, identifier: str) -> bool:
        ticked = self.wait_id(identifier).locator(
            "xpath=descendant-or-self::*[@aria-checked='true']"
        )
        return ticked.count() > 0

    def check(self, identifier: str) -> None:
        """Tick the identified checkbox (tapped again if a re-render swallowed the tap)."""
        for _attempt in range(3):
            if self.checked(identifier):
                return
            self.click(identifier)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and not self.checked(identifier):
                self.page.wait_for_timeout(100)
        if not self.checked(identifier):
            raise AssertionError(self.explain(f"{identifier!r} does not get ticked"))

    def _inside(self, target: Locator) -> bool:
        box = target.bounding_box()
        if box is None:
            return False
        width, height = self.size
        return (
            box["x"] >= 0
            and box["y"] >= 0
            and box["x"] + box["width"] <= width
            and box["y"] + box["height"] <= height
        )

    def type(self, identifier: str, text: str, *, enter: bool = False) -> None:
        """Replace the text of the identified text field, as a user would.

        The field is focused first and given a moment: Flutter attaches its
        text editing to the focused element, and text set before that is lost
        in part. Then select all, insert the text, check what the focused
        element holds (once more if it lost any).
        """
        field_ = self.wait_id(identifier).locator("input, textarea").first
        for _attempt in range(3):
            field_.focus()
            self.page.wait_for_timeout(200)
            self.page.keyboard.press("Control+A")
            self.page.keyboard.insert_text(text)
            self.page.wait_for_timeout(150)
            held = self.page.evaluate("document.activeElement && document.activeElement.value")
            if held == text:
                break
        else:
            raise AssertionError(self.explain(f"{identifier!r} does not take {text!r}: {held!r}"))
        if enter:
            self.page.keyboard.press("Enter")
        # The change reaches the app's Python side as an event; let it land
        # before the next action (a submit) is sent.
        self.page.wait_for_timeout(150)

    def value(self, identifier: str) -> str:
        return self.wait_id(identifier).locator("input, textarea").first.input_value()

    def choose(self, identifier: str, option: str) -> None:
        """Open the identified dropdown and pick the option named ``option``."""
        self.click(identifier)
        self.page.get_by_role("button", name=option, exact=True).last.click()

    def settle(self, seconds: float = 0.4) -> None:
        """Let animations and pending frames finish (before a screenshot)."""
        self.page.wait_for_timeout(seconds * 1000)

    # --- flows ---------------------------------------------------------------------
    def connect_with_key(self, key: str | None = None, *, expect_shell: bool = True) -> None:
        """From the connect screen (``up`` pre-fills the core's URL): the secret key, submit.

        When the shell is expected and the app did not get the whole key (a
        re-render while typing: "not a secret key"), or nothing happens, the
        key is typed and submitted again (three attempts).
        """
        from sm_client.views import ids

        self.wait_id(ids.screen("connect"), timeout=60)
        if not self.has(ids.CONNECT_KEY):
            self.click(ids.CONNECT_MODE_KEY)
            self.wait_id(ids.CONNECT_KEY)
        self.settle(0.5)
        malformed = connect_text_en("connect.failure.malformed_key")
        for _attempt in range(3):
            self.type(ids.CONNECT_KEY, key or self.fleet.secret_key)
            self.click(ids.CONNECT_SUBMIT)
            if not expect_shell:
                return
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.has(ids.NAV_RAIL) or self.has(ids.NAV_BAR):
                    return
                if malformed in (self.label_now(ids.CONNECT_ERROR) or ""):
                    break
                self.page.wait_for_timeout(200)
        self.wait_shell(timeout=5)

    def wait_shell(self, timeout: float = 60) -> None:
        """Until the shell shows its navigation (rail or bottom bar)."""
        from sm_client.views import ids

        either = self.page.locator(f"{ident(ids.NAV_RAIL)}, {ident(ids.NAV_BAR)}").first
        try:
            either.wait_for(state="attached", timeout=timeout * 1000)
        except Exception as exc:
            raise AssertionError(self.explain("the shell never showed its navigation")) from exc

    def sign_in(self, size: tuple[int, int] | None = None) -> None:
        self.open("/", size)
        self.connect_with_key()

    def go(self, screen: str) -> None:
        """Through the rail or the bottom bar to a top-level screen."""
        from sm_client.views import ids

        # Tapped again if the screen does not come: a tap landing while the
        # shell rebuilds (a screen still loading) can be lost. Idempotent.
        for attempt in range(3):
            self.click(ids.nav(screen))
            try:
                self.by_id(ids.screen(screen)).first.wait_for(state="attached", timeout=8_000)
                return
            except Exception:
                if attempt == 2:
                    raise AssertionError(self.explain(f"screen {screen!r} never came")) from None

    def tap_to(self, identifier: str, shown: str, attempts: int = 3) -> None:
        """Tap ``identifier`` until ``shown`` appears (a tap landing while a screen
        still loads can be lost on a busy machine; these taps are idempotent)."""
        for attempt in range(attempts):
            self.click(identifier)
            try:
                self.by_id(shown).first.wait_for(state="attached", timeout=10_000)
                return
            except Exception:
                if attempt == attempts - 1:
                    raise AssertionError(
                        self.explain(f"tapping {identifier!r} never showed {shown!r}")
                    ) from None

    def wait_loaded(self, timeout: float = 20) -> None:
        """Until no loading panel is shown."""
        from sm_client.views import ids

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.has(ids.STATE_LOADING):
            time.sleep(0.1)

    # --- looking -------------------------------------------------------------------
    def screenshot(self, name: str, theme: str | None = None) -> Path:
        width, height = self.size
        path = artifacts_dir() / "screens" / f"{name}-{width}x{height}-{theme or self.theme}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))
        return path

    def luminance(self) -> float:
        """Mean luminance (0 black … 1 white) of what the window shows."""
        data = base64.b64encode(self.page.screenshot()).decode()
        value: float = self.page.evaluate(_LUMINANCE_JS, data)
        return value

    def wait_luminance(self, check: Callable[[float], bool], timeout: float = 6) -> float:
        """The window's mean luminance once ``check`` holds (theme changes animate); the last otherwise."""
        deadline = time.monotonic() + timeout
        value = self.luminance()
        while not check(value) and time.monotonic() < deadline:
            self.page.wait_for_timeout(250)
            value = self.luminance()
        return value

    def overflowing(self) -> list[str]:
        """Labelled controls reaching past the right edge (horizontal scrolling or clipping)."""
        found: list[str] = self.page.evaluate(_OVERFLOW_JS, self.size[0])
        return found

    def explain(self, what: str) -> str:
        """``what`` with the page's texts, console and the server output, for a failing test."""
        with contextlib.suppress(Exception):
            shot = self.screenshot(f"failure-{re.sub(r'[^a-z0-9]+', '-', what.lower())[:40]}")
            what += f"\n[screenshot: {shot}]"
        texts = ""
        with contextlib.suppress(Exception):
            texts = self.text()[:3000]
        console = "\n".join(self.console[-30:])
        return (
            f"{what}\n--- page text ---\n{texts}\n--- browser console ---\n{console}"
            f"\n--- server output (tail) ---\n{self.fleet.output()[-6000:]}"
        )


def new_secret_like(key: str, *, fingerprint: bool) -> str:
    """``key`` with its secret (or its fingerprint) replaced: a wrong key, a wrong core."""
    kind, fp, secret = key.split(".", 2)
    if fingerprint:
        other = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        return f"{kind}.{other}.{secret}"
    return f"{kind}.{fp}.{secrets.token_urlsafe(len(secret) * 3 // 4)[: len(secret)]}"
