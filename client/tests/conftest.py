"""A real core for the client's tests: one ``smctl up`` per test module.

``core`` is the running system (its banner: keys and URLs; its data directory);
``admin`` is a :class:`CoreApi` signed in with the secret key, fresh per test.
Nothing is mocked: the API client and the view-models talk HTTPS and
WebSockets to the real services.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from sm_client.api import CoreApi, SecretKeyLogin
from sm_client.live import LiveEvents
from sm_ctl.banner import Banner
from sm_ctl.instance import UpProcess, free_port_pair

# tests/live_core.py (the shared Agent) lives in the repository's tests/ folder.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tests.live_core import Agent  # noqa: E402

# Response validation on (a contract breach is a 500 the tests see); heartbeats
# every second so live metrics and charts fill quickly.
STRICT = {"SM_VALIDATE_RESPONSES": "true", "SM_HEARTBEAT_INTERVAL": "1"}


@dataclass
class Core:
    up: UpProcess
    ready: Banner
    root: Path

    @property
    def api_url(self) -> str:
        return self.ready.api_url

    @property
    def secret_key(self) -> str:
        return self.ready.secret_key


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Core]:
    root = tmp_path_factory.mktemp("core")
    # The API and view-model tests need no web client (the browser tests start their own up).
    up = UpProcess.start(root / "data", free_port_pair(), "--no-web", env=STRICT)
    try:
        yield Core(up, up.wait_ready(), root)
    finally:
        up.stop()


@pytest.fixture
async def admin(core: Core, tmp_path: Path) -> AsyncIterator[CoreApi]:
    api = await CoreApi.bootstrap(core.api_url, core.secret_key, tmp_path / "ca.pem")
    try:
        await api.sign_in(SecretKeyLogin(core.secret_key))
        yield api
    finally:
        await api.aclose()


@pytest.fixture
async def feed(admin: CoreApi) -> AsyncIterator[LiveEvents]:
    """The live feed of ``admin``, connecting in the background, closed after the test."""
    live = LiveEvents(admin)
    live.start()
    try:
        yield live
    finally:
        await live.close()


@contextlib.contextmanager
def extra_agent(
    core: Core, root: Path, settings: Iterable[str], env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Another real agent enrolled in ``core`` (state under ``root``); yields its node id."""
    agent = Agent(root, core.api_url, core.ready.enrollment_key, settings=settings, env=env)
    agent.start()
    try:
        yield agent.node_id()
    finally:
        agent.stop()
