"""The live view of a command against the real core, two real agents and the real gateway.

Output and states arrive as ``progress`` events over ``LiveEvents`` on top of
what REST said; without a connected feed the same view gets there by re-reading
over REST. Duplicate chunks are dropped by offset, a gap is read over REST,
a reconnect re-syncs; cancel (command, one execution) and re-run.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import pytest

from sm_client.api import CoreApi
from sm_client.api.commands import CommandCreate, CommandsApi
from sm_client.live import LiveEvents
from sm_client.state.command_run import CommandRunState
from sm_client.state.feed import Handler, Message, Resync, Stop
from sm_client.state.observable import Phase

from .conftest import Core, extra_agent
from .feeds import until
from .online import online_nodes


class QuietFeed:
    """A feed that never connects: the view-model must get there over REST alone."""

    def __init__(self) -> None:
        self.topics: list[str] = []

    def subscribe(self, topic: str, handler: Handler) -> Stop:
        self.topics.append(topic)
        return lambda: self.topics.remove(topic)

    def on_resync(self, resync: Resync) -> Stop:
        return lambda: None

    @property
    def connected(self) -> bool:
        return False


@pytest.fixture(scope="module")
def second_node(core: Core, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another agent allowing shell commands, besides up's local one."""
    with extra_agent(core, tmp_path_factory.mktemp("second-agent"), ["allow_shell = true"]) as node:
        yield node


def shell(node_ids: list[str], script: str, timeout: int = 30) -> CommandCreate:
    return {
        "target": {"node_ids": node_ids},
        "kind": "shell",
        "shell": {"script": script},
        "timeout": timeout,
    }


async def test_two_nodes_outputs_and_exit_codes_arrive_live(
    admin: CoreApi, feed: LiveEvents, second_node: str
) -> None:
    nodes = await online_nodes(admin, 2)
    assert second_node in nodes
    await until(lambda: feed.connected, 15, "the live feed")
    # Waits long enough that the second line can only come as an event (polls are 4 s apart).
    created = await CommandsApi(admin).create(
        shell(nodes, "echo hello; sleep 1.5; echo world; echo warn >&2")
    )
    state = CommandRunState(admin, feed, created["id"])
    seen: list[Message] = []
    original = state.on_message

    def spy(message: Message) -> None:
        seen.append(message)
        original(message)

    state.on_message = spy  # type: ignore[method-assign]
    changes: list[int] = []
    state.listen(lambda: changes.append(1))
    await state.start()
    try:
        assert state.load.phase is Phase.READY
        assert {v.node_id for v in state.executions} == set(nodes)
        assert all(v.name for v in state.executions)
        await until(lambda: not state.running, 30, "both executions to end")
        for view in state.executions:
            assert view.state == "succeeded", (view.state, view.reason, view.error)
            assert view.exit_code == 0
        await until(
            lambda: all(v.text() == "hello\nworld\n" for v in state.executions), 10, "stdout"
        )
        assert all(v.text("stderr") == "warn\n" for v in state.executions)
        assert any(m["event"]["type"] == "output" for m in seen), "no output event arrived"
        assert any(m["event"]["type"] == "execution" for m in seen)
        assert state.counts()["succeeded"] == 2
        assert changes
    finally:
        await state.aclose()
    assert f"command:{created['id']}" not in feed.topics


async def test_without_the_feed_rest_gets_there_too(admin: CoreApi) -> None:
    (node,) = (await online_nodes(admin, 1))[:1]
    created = await CommandsApi(admin).create(shell([node], "echo one; sleep 1; echo two; exit 4"))
    quiet = QuietFeed()
    state = CommandRunState(admin, quiet, created["id"])
    await state.start()
    try:
        assert quiet.topics == [f"command:{created['id']}"]
        await until(lambda: not state.running, 30, "the execution to end")
        view = state.executions[0]
        assert view.state == "failed"
        assert view.exit_code == 4
        await until(lambda: view.text() == "one\ntwo\n", 10, "stdout over REST")
    finally:
        await state.aclose()
    assert quiet.topics == []


async def test_duplicates_are_dropped_by_offset_and_a_gap_is_read(admin: CoreApi) -> None:
    (node,) = (await online_nodes(admin, 1))[:1]
    commands = CommandsApi(admin)
    created = await commands.create(shell([node], "printf 'abcdef'"))
    state = CommandRunState(admin, QuietFeed(), created["id"])
    await state.start()
    try:
        await until(lambda: not state.running, 30, "the execution to end")
        await state.sync()
        view = state.executions[0]
        assert view.text() == "abcdef"

        def chunk(offset: int, data: bytes) -> Message:
            return {
                "type": "progress",
                "topic": f"command:{created['id']}",
                "event": {
                    "type": "output",
                    "command_id": created["id"],
                    "execution_id": view.id,
                    "node_id": node,
                    "stream": "stdout",
                    "offset": offset,
                    "data": base64.b64encode(data).decode(),
                    "at": time.time(),
                },
            }

        state.on_message(chunk(0, b"abc"))  # held already
        state.on_message(chunk(2, b"cdef"))  # overlaps entirely
        assert view.text() == "abcdef"
        state.on_message(chunk(4, b"efGH"))  # the new tail only
        assert view.text() == "abcdefGH"
        view.stdout[:] = b"ab"  # as if chunks had been missed
        state.on_message(chunk(5, b"fGH"))  # a gap: read over REST from offset 2
        await until(lambda: view.text() == "abcdef", 10, "the gap to be read over REST")
        # An execution event never moves an ended execution back.
        state.on_message(
            {
                "type": "progress",
                "topic": f"command:{created['id']}",
                "event": {
                    "type": "execution",
                    "command_id": created["id"],
                    "execution_id": view.id,
                    "node_id": node,
                    "state": "running",
                    "at": time.time(),
                },
            }
        )
        assert view.state == "succeeded"
        state.on_message({"type": "progress", "event": {"type": "something-new"}})
    finally:
        await state.aclose()


async def test_a_reconnect_resyncs_without_duplicating_output(
    admin: CoreApi, feed: LiveEvents
) -> None:
    (node,) = (await online_nodes(admin, 1))[:1]
    await until(lambda: feed.connected, 15, "the live feed")
    created = await CommandsApi(admin).create(
        shell([node], "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.4; done")
    )
    state = CommandRunState(admin, feed, created["id"])
    await state.start()
    try:
        await until(lambda: "line 2" in state.executions[0].text(), 15, "the first lines")
        connections = feed.connections
        await feed.reconnect()
        await until(lambda: feed.connections > connections, 15, "the feed to reconnect")
        await until(lambda: not state.running, 30, "the execution to end")
        expected = "".join(f"line {i}\n" for i in range(1, 7))
        await until(lambda: state.executions[0].text() == expected, 10, "every line once")
    finally:
        await state.aclose()


async def test_cancel_the_command_one_execution_and_run_again(
    admin: CoreApi, feed: LiveEvents, second_node: str
) -> None:
    nodes = await online_nodes(admin, 2)
    commands = CommandsApi(admin)
    created = await commands.create(shell(nodes, "echo started; sleep 30"))
    state = CommandRunState(admin, feed, created["id"])
    await state.start()
    try:
        assert state.may_run
        await until(lambda: all(v.state == "running" for v in state.executions), 20, "running")
        first = state.executions[0]
        assert await state.cancel_execution(first.id)
        await until(lambda: first.state == "cancelled", 20, "one execution cancelled")
        assert state.running  # the other still runs
        assert await state.cancel()
        await until(lambda: not state.running, 20, "the command cancelled")
        assert state.counts()["cancelled"] == 2
        assert not await state.cancel()  # nothing left: the core says 409
        assert state.problem is not None
        assert state.problem.status == 409
        again = await state.rerun(failed_only=True)
        assert again is not None
        assert again != created["id"]
        rerun = await commands.get(again)
        assert rerun["rerun_of"] == created["id"]
        assert {e["node_id"] for e in rerun["executions"]} == set(nodes)
        await commands.cancel(again)
    finally:
        await state.aclose()


async def test_an_unknown_command_is_an_error_state(admin: CoreApi) -> None:
    state = CommandRunState(admin, QuietFeed(), "c_not_a_command")
    await state.start()
    try:
        assert state.load.phase is Phase.ERROR
        assert state.load.problem is not None
        assert state.load.problem.status == 404
    finally:
        await state.aclose()
