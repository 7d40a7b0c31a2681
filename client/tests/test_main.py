"""The ``sm-client`` entry point: --help, the desktop and web modes, the served web app."""

from __future__ import annotations

import runpy
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

import sm_client.main as entry


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sm_client.main", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for option in ("--web", "--host", "--port", "--server"):
        assert option in done.stdout


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "sm-client"
    assert script.exists()
    done = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_desktop_and_web_modes_run_flet_as_they_should(monkeypatch: pytest.MonkeyPatch) -> None:
    import flet as ft
    import flet_desktop  # noqa: F401 (the desktop runtime's package is installed)

    runs: list[dict[str, Any]] = []
    monkeypatch.setattr(ft, "run", lambda main, **kwargs: runs.append(kwargs))
    monkeypatch.setenv("FLET_FORCE_WEB_SERVER", "0")  # restored after the test
    assert entry.main([]) == 0
    assert runs[-1]["view"] is ft.AppView.FLET_APP
    assert not runs[-1].get("no_cdn")
    assert entry.main(["--web", "--port", "9999", "--server", "https://core:8700"]) == 0
    assert runs[-1]["view"] is ft.AppView.WEB_BROWSER
    assert runs[-1]["no_cdn"] is True
    assert runs[-1]["host"] == "127.0.0.1"
    assert runs[-1]["port"] == 9999


def test_web_serves_the_app_with_no_cdn(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "web.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "sm_client.main", "--web", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                if response.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (tmp_path / "web.log").read_text()
            assert time.monotonic() < deadline, "the web client never answered"
            time.sleep(0.2)
        assert "flet.noCdn=true" in response.text
        # A deep link is the same app (routes are the client's).
        deep = httpx.get(f"http://127.0.0.1:{port}/nodes/some-node", timeout=5)
        assert deep.status_code == 200
        assert "flet.noCdn=true" in deep.text
        # The bundled fonts are served from the app's own host.
        from sm_client.main import ASSETS
        from sm_client.views.fonts import FONTS

        for path in FONTS.values():
            font = httpx.get(f"http://127.0.0.1:{port}/{path}", timeout=5)
            assert font.status_code == 200, path
            assert font.content == (ASSETS / path).read_bytes()
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def test_the_bundled_chinese_font_covers_every_chinese_string() -> None:
    import importlib

    from sm_client.i18n import AREAS
    from sm_client.main import ASSETS

    font = ASSETS / "fonts" / "NotoSansSC-Regular.otf"
    assert font.stat().st_size > 100_000
    kept = set((ASSETS / "fonts" / "NotoSansSC-chars.txt").read_text(encoding="utf-8"))
    missing: dict[str, str] = {}
    for area in AREAS:
        for key, text in importlib.import_module(f"sm_client.locales.{area}").ZH.items():
            if lost := "".join(sorted(set(text) - kept - {"\n"})):
                missing[key] = lost
    assert not missing, (
        f"characters the bundled font lacks (see assets/fonts/README-NotoSansSC.txt): {missing}"
    )


def test_routes_resolve_to_their_screen_and_parameters() -> None:
    from sm_client.views.shell import resolve

    found = resolve("/nodes/abc-1?tab=logs")
    assert found is not None
    route, params = found
    assert (route.nav, route.name, route.screen.__name__) == ("nodes", "node", "NodeScreen")
    assert params == {"node_id": "abc-1", "tab": "logs"}
    found = resolve("/commands/new?nodes=a,b&kind=service")
    assert found is not None
    assert found[0].screen.__name__ == "ComposerScreen"
    assert found[1] == {"nodes": "a,b", "kind": "service"}
    found = resolve("/commands/c-9")
    assert found is not None
    assert found[1] == {"command_id": "c-9"}
    assert found[0].screen.__name__ == "CommandRunScreen"
    found = resolve("/")
    assert found is not None
    assert found[0].nav == "dashboard"
    found = resolve("/settings/")
    assert found is not None
    assert found[0].nav == "settings"
    assert resolve("/no/such/screen") is None


def test_flet_build_finds_the_entry_and_it_opens_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``flet build`` (flet-cli 1.0.5) packages ``[tool.flet.app] path`` and runs
    ``<module>.py`` from it as ``__main__``: that file must exist there, its
    imports resolve from that folder, and it opens the app as a window."""
    client = Path(__file__).resolve().parents[1]
    app = tomllib.loads((client / "pyproject.toml").read_text())["tool"]["flet"]["app"]
    root = client / app["path"]
    entry_file = root / f"{app['module']}.py"
    assert entry_file.is_file()
    assert (root / "sm_client" / "__init__.py").is_file()  # packaged beside it
    calls: list[list[str]] = []

    def record(argv: list[str] | None = None) -> int:
        calls.append(list(argv or []))
        return 0

    monkeypatch.setattr(entry, "main", record)
    monkeypatch.setattr(sys, "argv", [str(entry_file), "--unexpected"])
    with pytest.raises(SystemExit) as ended:
        runpy.run_path(str(entry_file), run_name="__main__")
    assert ended.value.code == 0
    assert calls == [[]]  # no command line: the desktop or phone window
