"""The command composer's view-model: targets, what to run, validation, submit.

Targets are named one of three ways (``mode``): picked nodes (a searchable
list with checkboxes), groups, or a label selector. Whatever is named, the
core's resolve endpoint (``FleetApi.resolve``) counts the matching nodes,
debounced so typing a selector does not send a request per key; a preview
lists the first few of them by name.

What runs (``kind``): a shell script, a service action (a unit for every
action but ``list``), or a log read (a journald unit or a file path, the
last N lines, optionally followed). Timeout, batch, environment and a note
are optional. :meth:`ComposerState.errors` holds the validation messages as
i18n keys per field (the view translates them); :meth:`ComposerState.submit`
creates the command and returns its id.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Final, Literal, cast

from sm_client.api import ApiError, CoreApi
from sm_client.api.commands import (
    SERVICE_ACTIONS,
    CommandCreate,
    CommandsApi,
    Kind,
    LogsSpec,
    ServiceAction,
    ShellSpec,
)
from sm_client.api.fleet import FleetApi, Group, Node, Target
from sm_client.state.observable import Load, Observable, Problem

Mode = Literal["nodes", "groups", "labels"]
MODES: Final[tuple[Mode, ...]] = ("nodes", "groups", "labels")
LogSource = Literal["unit", "path"]
DEBOUNCE: Final = 0.35  # seconds after the last change before resolving
PICKER_PAGE: Final = 100  # nodes the picker lists per search
PREVIEW: Final = 12  # matched nodes the preview names
DEFAULT_TIMEOUT: Final = 60
_BATCH = re.compile(r"^([1-9][0-9]{0,4}|([1-9][0-9]?|100)%)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_UNIT = re.compile(r"^[A-Za-z0-9@._:\\-]{1,256}$")
_GROUP = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")


@dataclass
class Pick:
    """A node as the picker and the preview show it."""

    id: str
    name: str
    status: str = ""
    group: str | None = None

    @classmethod
    def of(cls, node: Node) -> Pick:
        return cls(node["id"], node["name"], node["status"], node["group"])


class ComposerState(Observable):
    """The composer form. ``errors()`` empty means ``submit()`` may be called."""

    def __init__(self, api: CoreApi, *, debounce: float = DEBOUNCE) -> None:
        super().__init__()
        self.api = api
        self.fleet = FleetApi(api)
        self.commands = CommandsApi(api)
        self.debounce = debounce
        # targets
        self.mode: Mode = "nodes"
        self.search = ""
        self.picker = Load()
        self.candidates: list[Pick] = []  # the picker's nodes for ``search``
        self.candidates_total = 0
        self.selected: dict[str, Pick] = {}  # node id → pick, in the order picked
        self.groups_load = Load()
        self.groups: list[Group] = []
        self.selected_groups: list[str] = []
        self.selector = ""
        # the live count of matched nodes
        self.matching = False  # a resolve is pending or in flight
        self.matched: int | None = None
        self.matched_problem: Problem | None = None
        self.preview: list[Pick] = []
        # what to run
        self.kind: Kind = "shell"
        self.script = ""
        self.service_action: ServiceAction = "restart"
        self.service_unit = ""
        self.logs_source: LogSource = "unit"
        self.logs_unit = ""
        self.logs_path = ""
        self.logs_lines = "100"
        self.logs_follow = False
        self.timeout = str(DEFAULT_TIMEOUT)
        self.batch = ""
        self.env = ""  # NAME=value, one a line
        self.note = ""
        # submitting
        self.touched = False  # show validation messages once the user tried to run
        self.submitting = False
        self.problem: Problem | None = None
        self._resolve_task: asyncio.Task[None] | None = None
        self._search_task: asyncio.Task[None] | None = None
        self._ending: set[asyncio.Task[None]] = set()
        self._generation = 0

    @property
    def may_run(self) -> bool:
        return self.api.may("commands:run")

    # --- set up ---------------------------------------------------------------------

    async def start(self, params: dict[str, str] | None = None) -> None:
        """Preselect from the route's query (``nodes``, ``groups``, ``selector``,
        ``kind``, ``unit``, ``action``, ``script``), then load the picker and groups."""
        params = params or {}
        ids = [i for i in params.get("nodes", "").split(",") if i.strip()]
        groups = [g for g in params.get("groups", "").split(",") if g.strip()]
        if ids:
            self.mode = "nodes"
            for node_id in ids[:200]:
                self.selected[node_id.strip()] = Pick(node_id.strip(), node_id.strip())
        elif groups:
            self.mode = "groups"
            self.selected_groups = [g.strip() for g in groups]
        elif params.get("selector"):
            self.mode = "labels"
            self.selector = params["selector"]
        kind = params.get("kind")
        if kind in ("shell", "service", "logs"):
            self.kind = cast(Kind, kind)
        if params.get("action") in SERVICE_ACTIONS:
            self.service_action = cast(ServiceAction, params["action"])
        if params.get("unit"):
            self.service_unit = params["unit"]
            self.logs_unit = params["unit"]
        if params.get("path"):
            self.logs_source, self.logs_path = "path", params["path"]
        if params.get("script"):
            self.script = params["script"]
        self.changed()
        await asyncio.gather(self._load_picker(), self._load_groups(), self._name_selected())
        await self.resolve_now()

    def stop(self) -> None:
        """Cancel pending lookups (the screen is left)."""
        for task in (self._resolve_task, self._search_task):
            if task is not None:
                task.cancel()
                self._ending.add(task)
        self._resolve_task = self._search_task = None

    async def aclose(self) -> None:
        """:meth:`stop`, then wait until the cancelled lookups have ended."""
        self.stop()
        ending, self._ending = list(self._ending), set()
        await asyncio.gather(*ending, return_exceptions=True)

    async def _name_selected(self) -> None:
        """Names for nodes preselected by id (at most the first 50 are looked up)."""
        unnamed = [p.id for p in self.selected.values() if p.name == p.id][:50]
        if not unnamed:
            return
        found = await asyncio.gather(
            *(self.fleet.get_node(node_id) for node_id in unnamed), return_exceptions=True
        )
        for node in found:
            if isinstance(node, dict) and node["id"] in self.selected:
                self.selected[node["id"]] = Pick.of(node)
        self.changed()

    async def _load_picker(self) -> None:
        self.picker.loading()
        self.changed()
        try:
            page = await self.fleet.list_nodes(q=self.search or None, limit=PICKER_PAGE)
        except ApiError as exc:
            self.picker.failed(exc)
        else:
            self.candidates = [Pick.of(n) for n in page["items"]]
            self.candidates_total = page["total"]
            self.picker.ready(empty=not self.candidates)
        self.changed()

    async def _load_groups(self) -> None:
        self.groups_load.loading()
        try:
            self.groups = await self.fleet.list_groups()
        except ApiError as exc:
            self.groups_load.failed(exc)
        else:
            self.groups_load.ready(empty=not self.groups)
        self.changed()

    async def reload_picker(self) -> None:
        await asyncio.gather(self._load_picker(), self._load_groups())

    # --- targets --------------------------------------------------------------------

    def set_mode(self, mode: Mode) -> None:
        if mode != self.mode:
            self.mode = mode
            self._target_changed()

    def set_search(self, text: str) -> None:
        """Search the picker (debounced like the count)."""
        self.search = text.strip()
        if self._search_task is not None:
            self._search_task.cancel()
        self._search_task = asyncio.create_task(self._search_later())

    async def _search_later(self) -> None:
        await asyncio.sleep(self.debounce)
        await self._load_picker()

    def toggle_node(self, node_id: str, on: bool | None = None) -> None:
        on = (node_id not in self.selected) if on is None else on
        if on and node_id not in self.selected:
            pick = next((c for c in self.candidates if c.id == node_id), Pick(node_id, node_id))
            self.selected[node_id] = pick
        elif not on:
            self.selected.pop(node_id, None)
        else:
            return
        self._target_changed()

    def select_all_shown(self) -> None:
        for pick in self.candidates:
            self.selected.setdefault(pick.id, pick)
        self._target_changed()

    def clear_nodes(self) -> None:
        self.selected.clear()
        self._target_changed()

    def toggle_group(self, name: str, on: bool | None = None) -> None:
        on = (name not in self.selected_groups) if on is None else on
        if on and name not in self.selected_groups:
            self.selected_groups.append(name)
        elif not on and name in self.selected_groups:
            self.selected_groups.remove(name)
        else:
            return
        self._target_changed()

    def set_selector(self, text: str) -> None:
        self.selector = text
        self._target_changed()

    def target(self) -> Target | None:
        """What the current mode names, or None when it names nothing yet."""
        if self.mode == "nodes":
            return {"node_ids": list(self.selected)} if self.selected else None
        if self.mode == "groups":
            return {"groups": list(self.selected_groups)} if self.selected_groups else None
        selector = self.selector.strip()
        return {"selector": selector} if selector else None

    def _target_changed(self) -> None:
        """Count again after a pause (the newest change wins)."""
        self._generation += 1
        if self._resolve_task is not None:
            self._resolve_task.cancel()
        self.matching = self.target() is not None
        if not self.matching:
            self.matched, self.matched_problem, self.preview = None, None, []
        self.changed()
        if self.matching:
            self._resolve_task = asyncio.create_task(self._resolve_later(self._generation))

    async def _resolve_later(self, generation: int) -> None:
        await asyncio.sleep(self.debounce)
        await self._resolve(generation)

    async def resolve_now(self) -> None:
        """Count the matched nodes at once (tests, and the first render)."""
        if self._resolve_task is not None:
            self._resolve_task.cancel()
            self._resolve_task = None
        self._generation += 1
        await self._resolve(self._generation)

    async def _resolve(self, generation: int) -> None:
        target = self.target()
        if target is None:
            self.matching, self.matched, self.matched_problem, self.preview = False, None, None, []
            self.changed()
            return
        self.matching = True
        self.changed()
        try:
            resolved = await self.fleet.resolve(target)
            preview = await self._preview(target, resolved["node_ids"])
        except ApiError as exc:
            if generation != self._generation:
                return
            self.matched, self.matched_problem, self.preview = None, Problem.of(exc), []
        else:
            if generation != self._generation:
                return
            self.matched, self.matched_problem = resolved["count"], None
            self.preview = preview
        self.matching = False
        self.changed()

    async def _preview(self, target: Target, ids: list[str]) -> list[Pick]:
        """Up to :data:`PREVIEW` of the matched nodes by name."""
        if not ids:
            return []
        wanted = ids[:PREVIEW]
        if self.mode == "nodes":
            return [self.selected.get(i, Pick(i, i)) for i in wanted]
        known: dict[str, Pick] = {}
        if self.mode == "labels" and "selector" in target:
            page = await self.fleet.list_nodes(selector=target["selector"], limit=PREVIEW)
            known = {n["id"]: Pick.of(n) for n in page["items"]}
        else:
            for group in target.get("groups", [])[:PREVIEW]:
                page = await self.fleet.list_nodes(group=group, limit=PREVIEW)
                known.update({n["id"]: Pick.of(n) for n in page["items"]})
                if len(known) >= PREVIEW:
                    break
        picks = [known[i] for i in wanted if i in known]
        return picks or [Pick(i, i) for i in wanted]

    # --- what to run ------------------------------------------------------------------

    def set(self, name: str, value: object) -> None:
        """Set one form field (``script``, ``timeout``, ``kind`` …) and re-render."""
        if not hasattr(self, name) or name.startswith("_"):
            raise AttributeError(name)
        setattr(self, name, value)
        self.problem = None
        self.changed()

    def errors(self) -> dict[str, str]:
        """Field → i18n key of what is wrong with it (empty when the form may be sent)."""
        wrong: dict[str, str] = {}
        if self.target() is None:
            wrong["target"] = f"commands.error.target_{self.mode}"
        elif self.matched_problem is not None:
            wrong["target"] = "commands.error.target_invalid"
        elif self.matched == 0 and not self.matching:
            wrong["target"] = "commands.error.target_none"
        if self.mode == "groups" and any(not _GROUP.match(g) for g in self.selected_groups):
            wrong["target"] = "commands.error.group_name"
        if self.kind == "shell":
            if not self.script.strip():
                wrong["script"] = "commands.error.script_required"
            elif len(self.script) > 65536:
                wrong["script"] = "commands.error.script_long"
            if self._env() is None:
                wrong["env"] = "commands.error.env"
        elif self.kind == "service":
            if self.service_action != "list" and not _UNIT.match(self.service_unit.strip()):
                wrong["unit"] = "commands.error.unit_required"
        else:
            if self.logs_source == "unit" and not _UNIT.match(self.logs_unit.strip()):
                wrong["logs_unit"] = "commands.error.unit_required"
            if self.logs_source == "path" and not self.logs_path.strip().startswith("/"):
                wrong["logs_path"] = "commands.error.path_required"
            if not _int_within(self.logs_lines, 0, 100000):
                wrong["lines"] = "commands.error.lines"
        if not _int_within(self.timeout, 1, 86400):
            wrong["timeout"] = "commands.error.timeout"
        if self.batch.strip() and not _BATCH.match(self.batch.strip()):
            wrong["batch"] = "commands.error.batch"
        if len(self.note) > 1024:
            wrong["note"] = "commands.error.note"
        return wrong

    def shown_errors(self) -> dict[str, str]:
        """What the view shows: a field's message once it has text or a run was tried."""
        wrong = self.errors()
        if self.touched:
            return wrong
        typed = {
            "timeout": self.timeout,
            "batch": self.batch,
            "env": self.env,
            "lines": self.logs_lines,
            "note": self.note,
            "unit": self.service_unit,
            "logs_unit": self.logs_unit,
            "logs_path": self.logs_path,
        }
        shown = {k: v for k, v in wrong.items() if typed.get(k)}
        if wrong.get("target") in ("commands.error.target_invalid", "commands.error.target_none"):
            shown["target"] = wrong["target"]
        return shown

    def _env(self) -> dict[str, str] | None:
        """The environment lines as a dict; None when a line is not ``NAME=value``."""
        env: dict[str, str] = {}
        for raw in self.env.splitlines():
            line = raw.strip()
            if not line:
                continue
            name, sep, value = line.partition("=")
            if not sep or not _ENV_NAME.match(name.strip()):
                return None
            env[name.strip()] = value
        return env

    def body(self) -> CommandCreate:
        """The request the form describes (call when :meth:`errors` is empty)."""
        target = self.target()
        assert target is not None
        body: CommandCreate = {
            "target": dict(target),  # type: ignore[typeddict-item]
            "kind": self.kind,
            "timeout": int(self.timeout.strip()),
        }
        if self.kind == "shell":
            shell: ShellSpec = {"script": self.script}
            env = self._env()
            if env:
                shell["env"] = env
            body["shell"] = shell
        elif self.kind == "service":
            body["service"] = {"action": self.service_action}
            if self.service_action != "list":
                body["service"]["unit"] = self.service_unit.strip()
        else:
            logs: LogsSpec = {"lines": int(self.logs_lines.strip()), "follow": self.logs_follow}
            if self.logs_source == "unit":
                logs["unit"] = self.logs_unit.strip()
            else:
                logs["path"] = self.logs_path.strip()
            body["logs"] = logs
        if self.batch.strip():
            body["batch"] = self.batch.strip()
        if self.note.strip():
            body["note"] = self.note.strip()
        return body

    async def submit(self) -> str | None:
        """Create the command; its id, or None (see :attr:`problem` / :meth:`errors`)."""
        self.touched = True
        if self.matching:
            await self.resolve_now()
        if self.errors() or self.submitting:
            self.changed()
            return None
        self.submitting, self.problem = True, None
        self.changed()
        try:
            command = await self.commands.create(self.body())
        except ApiError as exc:
            self.problem = Problem.of(exc)
            return None
        finally:
            self.submitting = False
            self.changed()
        return command["id"]


def _int_within(text: str, low: int, high: int) -> bool:
    try:
        value = int(text.strip())
    except ValueError:
        return False
    return low <= value <= high
