"""The composer's view-model against the real core: targets, the debounced count, validation, run."""

from __future__ import annotations

from sm_client.api import CoreApi
from sm_client.api.commands import CommandsApi
from sm_client.api.fleet import FleetApi
from sm_client.state.composer import ComposerState
from sm_client.state.observable import Phase

from .feeds import until
from .online import local_node


async def test_nodes_preselected_by_the_route_are_counted_and_run(admin: CoreApi) -> None:
    node_id = await local_node(admin)
    composer = ComposerState(admin, debounce=0.05)
    await composer.start({"nodes": node_id})
    try:
        assert composer.may_run
        assert composer.mode == "nodes"
        assert list(composer.selected) == [node_id]
        assert composer.selected[node_id].name != node_id  # named from the registry
        assert composer.matched == 1
        assert [p.id for p in composer.preview] == [node_id]
        assert composer.picker.phase is Phase.READY
        assert node_id in [c.id for c in composer.candidates]
        assert composer.errors() == {"script": "commands.error.script_required"}
        assert composer.shown_errors() == {}  # nothing typed, no run tried yet
        assert await composer.submit() is None
        assert composer.shown_errors() == {"script": "commands.error.script_required"}
        composer.set("script", "echo hello")
        composer.set("env", "GREETING=hi\n\nOTHER=a=b")
        composer.set("batch", "50%")
        composer.set("note", "from the composer test")
        command_id = await composer.submit()
        assert command_id is not None
        command = await CommandsApi(admin).get(command_id)
        assert command["target"] == {"node_ids": [node_id]}
        assert command["shell"] == {
            "script": "echo hello",
            "env": {"GREETING": "***", "OTHER": "***"},
        }
        assert command["batch"] == "50%"
        assert command["timeout"] == 60
        assert command["note"] == "from the composer test"
    finally:
        await composer.aclose()


async def test_a_label_selector_is_counted_debounced(admin: CoreApi) -> None:
    node_id = await local_node(admin)
    await FleetApi(admin).update_node(node_id, {"labels": {"composer": "yes"}})
    composer = ComposerState(admin, debounce=0.2)
    await composer.start({"selector": "composer=yes"})
    calls: list[object] = []
    real = composer.fleet.resolve

    async def counting(target: object) -> object:
        calls.append(target)
        return await real(target)  # type: ignore[arg-type]

    composer.fleet.resolve = counting  # type: ignore[method-assign, assignment]
    try:
        assert composer.mode == "labels"
        assert composer.matched == 1
        assert composer.preview[0].id == node_id
        for text in ("c", "co", "composer", "composer=", "composer=no"):
            composer.set_selector(text)  # typing: each key resets the pause
        assert composer.matching
        await until(lambda: not composer.matching, 5, "the debounced count")
        assert calls == [{"selector": "composer=no"}]
        assert composer.matched == 0
        assert composer.errors()["target"] == "commands.error.target_none"
        composer.set_selector("composer in (")
        await until(lambda: not composer.matching, 5, "the bad selector's answer")
        assert composer.matched is None
        assert composer.matched_problem is not None
        assert composer.matched_problem.status == 400
        assert composer.errors()["target"] == "commands.error.target_invalid"
        composer.set_selector("")
        assert composer.errors()["target"] == "commands.error.target_labels"
        assert not composer.matching
    finally:
        await composer.aclose()


async def test_groups_and_a_service_action_from_the_route(admin: CoreApi) -> None:
    node_id = await local_node(admin)
    fleet = FleetApi(admin)
    await fleet.create_group({"name": "composer-web"})
    composer = ComposerState(admin, debounce=0.05)
    await composer.start(
        {"groups": "composer-web", "kind": "service", "unit": "nginx.service", "action": "restart"}
    )
    try:
        assert composer.mode == "groups"
        assert composer.selected_groups == ["composer-web"]
        assert "composer-web" in [g["name"] for g in composer.groups]
        assert composer.matched == 0
        await fleet.update_node(node_id, {"group": "composer-web"})
        await composer.resolve_now()
        assert composer.matched == 1
        assert composer.preview[0].id == node_id
        assert composer.kind == "service"
        assert composer.service_action == "restart"
        assert composer.errors() == {}
        body = composer.body()
        assert body["service"] == {"action": "restart", "unit": "nginx.service"}
        assert body["target"] == {"groups": ["composer-web"]}
        composer.toggle_group("composer-web")
        assert composer.errors()["target"] == "commands.error.target_groups"
    finally:
        await composer.aclose()
        await fleet.update_node(node_id, {"group": None})


async def test_validation_messages_per_field(admin: CoreApi) -> None:
    node_id = await local_node(admin)
    composer = ComposerState(admin, debounce=0.05)
    await composer.start({})
    try:
        assert composer.errors()["target"] == "commands.error.target_nodes"
        composer.toggle_node(node_id)
        await until(lambda: not composer.matching, 5, "the count")
        assert composer.matched == 1
        composer.set("script", "true")
        composer.set("timeout", "0")
        composer.set("batch", "lots")
        composer.set("env", "not a pair")
        assert composer.errors() == {
            "timeout": "commands.error.timeout",
            "batch": "commands.error.batch",
            "env": "commands.error.env",
        }
        assert composer.shown_errors() == composer.errors()  # typed fields show theirs
        composer.set("kind", "service")
        composer.set("service_action", "stop")
        assert composer.errors()["unit"] == "commands.error.unit_required"
        composer.set("service_action", "list")
        assert "unit" not in composer.errors()
        composer.set("kind", "logs")
        composer.set("logs_source", "path")
        composer.set("logs_path", "var/log/syslog")
        composer.set("logs_lines", "-1")
        wrong = composer.errors()
        assert wrong["logs_path"] == "commands.error.path_required"
        assert wrong["lines"] == "commands.error.lines"
        composer.set("logs_path", "/var/log/syslog")
        composer.set("logs_lines", "20")
        composer.set("logs_follow", True)
        composer.set("timeout", "30")
        composer.set("batch", "")
        assert composer.errors() == {}
        assert composer.body()["logs"] == {"lines": 20, "follow": True, "path": "/var/log/syslog"}
        composer.toggle_node(node_id)
        assert composer.selected == {}
        assert composer.matched is None
        composer.set_search(node_id[:4])
        await until(lambda: composer.picker.phase is not Phase.LOADING, 5, "the search")
        composer.select_all_shown()
        assert node_id in composer.selected
    finally:
        await composer.aclose()


async def test_a_refused_command_is_the_problem_shown(admin: CoreApi) -> None:
    composer = ComposerState(admin, debounce=0.05)
    await composer.start({"nodes": "00000000-0000-4000-8000-000000000000"})
    try:
        assert composer.matched_problem is not None
        assert composer.matched_problem.status == 404
        composer.set("script", "true")
        assert await composer.submit() is None
        assert composer.errors()["target"] == "commands.error.target_invalid"
    finally:
        await composer.aclose()
