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
import signal
import socket
import stat
import subprocess
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
WEB_LABEL: Final = getattr(banner, "WEB", "Web client")

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
    web: subprocess.Popen[bytes] | None = None  # the web client when up does not serve one
    web_log: Path | None = None

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
        """What up (and the web client it serves) printed so far; the web client's own log otherwise."""
        with contextlib.suppress(UpExited):
            self.up.read_until(lambda _line: False, within=0.05)
        text = self.up.output
        if self.web_log is not None and self.web_log.exists():
            text += "\n--- sm-client --web ---\n" + self.web_log.read_text(errors="replace")
        return text[-20_000:]


def _start_own_web_client(root: Path, api_url: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = root / "web-client.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env.update({"BROWSER": "/bin/true", "FLET_FORCE_WEB_SERVER": "1"})
    with log.open("ab") as out:
        process = subprocess.Popen(
            [SM_CLIENT, "--web", "--host", "127.0.0.1", "--port", str(port), "--server", api_url],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, f"sm-client --web exited:\n{log.read_text()}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        return False

    wait_for(answers, 40, "the web client to listen", step=0.2)
    return process, url, log


@contextlib.contextmanager
def web_fleet(root: Path) -> Iterator[WebFleet]:
    up = UpProcess.start(root / "data", free_port_pair(), env=STRICT)
    agents: dict[str, Agent] = {}
    api: AdminApi | None = None
    web: subprocess.Popen[bytes] | None = None
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

        web_url = ready.fields.get(WEB_LABEL)
        web_log = None
        if not web_url:
            web, web_url, web_log = _start_own_web_client(root, ready.api_url)
        yield WebFleet(
            up, ready, api, web_url.rstrip("/"), local, prod, svc, calls, command_id,
            agents, web, web_log,
        )  # fmt: skip
    finally:
        if web is not None and web.poll() is None:
            os.killpg(web.pid, signal.SIGTERM)
            try:
                web.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(web.pid, signal.SIGKILL)
                web.wait()
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
        self.context.set_default_timeout(15_000)
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
        self.page.goto(self.fleet.web_url + path)
        self.page.wait_for_selector("#loading", state="detached", timeout=30_000)
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
        """The identified control's text (a Semantics' label shows up in its inner text)."""
        locator = self.wait_id(identifier)
        text = locator.inner_text().strip()
        aria = locator.get_attribute("aria-label") or ""
        return f"{aria}\n{text}".strip() if aria and aria not in text else text

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
            if self.has(identifier):
                with contextlib.suppress(Exception):
                    last = self.label(identifier)
                    if test(last):
                        return last
            time.sleep(0.1)
        raise AssertionError(
            self.explain(
                f"{identifier!r} never showed {check!r} within {timeout:g} s; last: {last!r}"
            )
        )

    def text(self) -> str:
        """Every text of the semantics tree."""
        host = self.page.locator("flt-semantics-host")
        return host.inner_text() if host.count() else ""

    def wait_page_text(self, needle: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            time.sleep(0.1)
        raise AssertionError(self.explain(f"the page never showed {needle!r}"))

    # --- acting --------------------------------------------------------------------
    def click(self, identifier: str) -> None:
        target = self.wait_id(identifier).locator(_TAPPABLE).first
        if target.count() == 0:
            target = self.by_id(identifier).first
        target.click()

    def type(self, identifier: str, text: str, *, enter: bool = False) -> None:
        """Replace the text of the identified text field."""
        field_ = self.wait_id(identifier).locator("input, textarea").first
        field_.click()
        field_.fill(text)
        if enter:
            field_.press("Enter")

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
        """From the connect screen: the core's URL and the secret key, then submit."""
        from sm_client.views import ids

        self.wait_id(ids.screen("connect"), timeout=30)
        self.type(ids.CONNECT_SERVER, self.fleet.api_url)
        if self.has(ids.CONNECT_MODE_KEY):
            self.click(ids.CONNECT_MODE_KEY)
        self.type(ids.CONNECT_KEY, key or self.fleet.secret_key)
        self.click(ids.CONNECT_SUBMIT)
        if expect_shell:
            self.wait_id(ids.screen("dashboard"), timeout=30)

    def sign_in(self, size: tuple[int, int] | None = None) -> None:
        self.open("/", size)
        self.connect_with_key()

    def go(self, screen: str) -> None:
        """Through the rail or the bottom bar to a top-level screen."""
        from sm_client.views import ids

        self.click(ids.nav(screen))
        self.wait_id(ids.screen(screen))

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
