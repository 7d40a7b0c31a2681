"""The node list in Chromium with 1,000 nodes: first page interactive, a filter, a sort.

Run: ``uv run python bench/client_nodes.py [--nodes 1000] [--rounds 7]``

1. A data directory is initialised and ``--nodes`` nodes are enrolled through
   the registry's real enroll endpoint (in process, as ``bench/node_list.py``
   does), labelled in bulk (``env`` prod/staging, ``role`` web/db/cache) and put
   in groups; every node gets a latest metrics row (``sm_metrics.synthetic``
   values). Then ``smctl up --no-agent`` starts on it (with its web client)
   and two thirds of the nodes are marked online (presence keys in its Redis).
2. The client (``up``'s web client, in Chromium through the accessibility
   tree, as the browser tests drive it), signed in with the secret key:
   - first page: from the tap on "Nodes" (coming from the dashboard) until the
     first row of the page (by name) is in the semantics tree and the count
     shows every node — the rows are laid out and tappable;
   - filter: from Enter in the label-selector field until the count shows the
     matching number and the first matching row is there (alternating
     ``env=staging`` and ``role=db``, the list starting unfiltered each time);
   - sort by CPU: from the tap on the CPU column header until a row of the
     busiest page (one the first page by name lacks) is there.
3. Raw baselines in the same run, on the same core:
   - API: the two calls the screen makes (``GET /api/v1/nodes`` for a page, ``GET /api/v1/metrics/latest`` for those ids) with httpx,
     and for a sort by CPU every node and every latest value, ordered;
   - bare Flet: a minimal Flet page (this file with ``--bare-app``) served the
     same way, fetching the same two calls and rendering as many plain rows as a page
     of the screen holds (name,
     status, CPU, memory, disk, network, a checkbox); measured in the same
     Chromium the same way (a tap until the first row is there; Enter in a
     filter field until the count and first row show).

Printed: medians (and every round), and client / baseline ratios. Targets:
first page < 2 s, filter < 300 ms.
"""

from __future__ import annotations

import argparse
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def page_size() -> int:
    """The node list screen's page size: the bare page shows as many rows."""
    from sm_client.views.nodes import PAGE_SIZE

    return int(PAGE_SIZE)


FILTERS: Final = ("env=staging", "role=db")


# --- the bare Flet page (a subprocess: --bare-app) --------------------------------


def bare_app(port: int, api_url: str, token: str, ca_file: str) -> None:
    """A minimal Flet page listing one page of nodes with the same two API calls."""
    import flet as ft
    import httpx

    context = ssl.create_default_context(cafile=ca_file)
    rows_per_page = page_size()

    async def fetch(selector: str) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
        async with httpx.AsyncClient(
            base_url=api_url,
            verify=context,
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
        ) as http:
            params: dict[str, Any] = {"limit": rows_per_page, "sort": "name", "order": "asc"}
            if selector:
                params["selector"] = selector
            page = (await http.get("/api/v1/nodes", params=params)).json()
            node_ids = [n["id"] for n in page["items"]]
            latest = (
                await http.get(
                    "/api/v1/metrics/latest", params={"node_id": node_ids, "limit": rows_per_page}
                )
            ).json()
            values = {item["node_id"]: item["values"] for item in latest["items"]}
            return page["total"], page["items"], values

    def main(page: ft.Page) -> None:
        rows = ft.ListView(expand=True, spacing=2)
        count = ft.Text("")
        count_node = ft.Semantics(identifier="bare-count", label="", content=count)

        async def show(selector: str) -> None:
            total, items, values = await fetch(selector)
            rows.controls = [
                ft.Semantics(
                    identifier=f"bare-row-{n['id']}",
                    label=n["name"],
                    content=ft.Row(
                        [
                            ft.Checkbox(),
                            ft.Text(n["name"], width=160),
                            ft.Text(n["status"], width=70),
                            ft.Text(f"{values.get(n['id'], {}).get('cpu', 0):.0f}%", width=60),
                            ft.Text(
                                f"{values.get(n['id'], {}).get('mem_percent', 0):.0f}%", width=60
                            ),
                            ft.Text(
                                f"{values.get(n['id'], {}).get('disk_percent', 0):.0f}%",
                                width=60,
                            ),
                            ft.Text(
                                f"{values.get(n['id'], {}).get('net_rx_bps', 0):.0f} B/s",
                                width=100,
                            ),
                        ]
                    ),
                )
                for n in items
            ]
            count.value = f"{total} nodes"
            count_node.label = f"{total} nodes"
            page.update()

        async def load(_: ft.Event[ft.Button]) -> None:
            await show("")

        async def submitted(e: ft.Event[ft.TextField]) -> None:
            await show(e.control.value or "")

        page.add(
            ft.Semantics(identifier="bare-load", content=ft.Button("Load", on_click=load)),
            ft.Semantics(
                identifier="bare-filter", content=ft.TextField(label="Labels", on_submit=submitted)
            ),
            count_node,
            rows,
        )

    os.environ.setdefault("FLET_FORCE_WEB_SERVER", "1")
    os.environ.setdefault("BROWSER", "/bin/true")
    ft.run(main, view=ft.AppView.WEB_BROWSER, host="127.0.0.1", port=port, no_cdn=True)


# --- seeding ----------------------------------------------------------------------


def seed(data_root: Path, count: int) -> None:
    """``count`` enrolled nodes with labels, groups and a latest metrics row each."""
    from harness import private_redis
    from node_list import facts
    from sqlalchemy import insert

    from sm_metrics.schema import create_tables, latest
    from sm_metrics.settings import MetricsSettings
    from sm_metrics.synthetic import DETAIL, values
    from sm_registry import RegistrySettings, create_app
    from sm_shared.access_keys import KeyKind, load_key
    from sm_shared.database import create_database_engine, writer
    from sm_shared.datadir import DataDir
    from sm_shared.first_start import initialize
    from sm_shared.scopes import ALL_SCOPES
    from sm_shared.tokens import issue_access_token

    data = DataDir(data_root)
    initialize(data)
    token = issue_access_token(
        data, subject="bench", client_id="bench", scopes=ALL_SCOPES, ttl=3600
    )
    auth = {"Authorization": f"Bearer {token}"}
    began = time.perf_counter()
    ids: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, private_redis(Path(tmp)) as redis_url:
        app = create_app(RegistrySettings(data_dir=data.root, redis_url=redis_url))
        key = str(load_key(data, KeyKind.ENROLLMENT))
        with app.test_client() as client:
            for i in range(count):
                response = client.post(
                    "/api/v1/enroll",
                    json={"key": key, "machine_id": f"machine-{i:05d}", "facts": facts(i)},
                )
                assert response.status_code == 201, response.text
                ids.append(response.json()["node_id"])
            for role in ("web", "db", "cache"):
                response = client.post("/api/v1/groups", json={"name": role}, headers=auth)
                assert response.status_code == 201, response.text
            for n, (env, role) in enumerate(
                [("prod", "web"), ("prod", "db"), ("staging", "web"), ("staging", "cache")]
            ):
                part = ids[n::4]
                response = client.post(
                    "/api/v1/nodes/bulk",
                    json={
                        "node_ids": part,
                        "labels": {"set": {"env": env, "role": role}},
                        "group": role,
                    },
                    headers=auth,
                )
                assert response.status_code == 200, response.text
    settings = MetricsSettings(data_dir=data.root, redis_url="redis://unused")
    engine = create_database_engine(settings.database_url)
    create_tables(engine)
    now = time.time()
    rows = [
        {
            "node_id": node_id,
            "boot_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            "seq": 0,
            "ts": now,
            "received_at": now,
            "skewed": False,
            "dropped": 0,
            **values(index, now),
            "detail": DETAIL,
        }
        for index, node_id in enumerate(ids)
    ]
    with writer(engine).begin() as conn:
        conn.execute(insert(latest), rows)
    engine.dispose()
    print(
        f"seeded {count} nodes (labels, groups, latest metrics) in {time.perf_counter() - began:.1f} s"
    )


def mark_online(redis_url: str, node_ids: list[str]) -> None:
    import redis

    from sm_shared.streams import presence_key

    client = redis.Redis.from_url(redis_url)
    pipe = client.pipeline()
    for node_id in node_ids:
        pipe.set(presence_key(node_id), b'{"gateway":"bench"}', ex=3600)
    pipe.execute()
    client.close()


# --- measuring --------------------------------------------------------------------

# Resolves once the element with identifier ``present`` exists and the one with
# ``count`` shows ``want`` (digits compared without separators).
_READY_JS: Final = """([present, count, want]) => {
  if (!document.querySelector(`[flt-semantics-identifier='${present}']`)) return false;
  const c = document.querySelector(`[flt-semantics-identifier='${count}']`);
  if (!c) return false;
  let text = (c.getAttribute("aria-label") || "") + " " + c.innerText;
  for (const d of c.querySelectorAll("[aria-label]")) text += " " + d.getAttribute("aria-label");
  const numbers = (text.match(/\\d[\\d,.\\u202f\\u00a0 ]*/g) || []).map(s => s.replace(/[^\\d]/g, ""));
  return numbers.includes(String(want));
}"""


def until(page: Any, present: str, count: str, want: int, timeout: float = 30) -> None:
    page.wait_for_function(
        _READY_JS, arg=[present, count, want], polling="raf", timeout=timeout * 1000
    )


def every_node(http: Any) -> list[dict[str, Any]]:
    """Every node by name, as a sort by a metric reads them (pages of 1,000)."""
    nodes: list[dict[str, Any]] = []
    while True:
        page = http.get(
            "/api/v1/nodes", params={"limit": 1000, "offset": len(nodes), "sort": "name"}
        ).json()
        nodes += page["items"]
        if not page["items"] or len(nodes) >= page["total"]:
            return nodes


def cpu_order(http: Any, nodes: list[dict[str, Any]]) -> list[str]:
    """The ids of ``nodes`` busiest first, as the list orders them: every latest
    value read a page at a time, ordered by the client's own function."""
    from sm_client.state.nodes import by_metric

    values: dict[str, Any] = {}
    after = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if after:
            params["after"] = after
        page = http.get("/api/v1/metrics/latest", params=params).json()
        values |= {i["node_id"]: (i["values"], i["ts"]) for i in page["items"]}
        after = page["next_after"]
        if after is None or not page["items"]:
            break
    return [n["id"] for n in by_metric(nodes, values, "cpu", descending=True)]  # type: ignore[arg-type]


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def rounds_text(values: list[float]) -> str:
    return ", ".join(f"{v * 1000:.0f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--bare-app", nargs=4, metavar=("PORT", "API", "TOKEN", "CA"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.bare_app:
        port, api, token, ca = args.bare_app
        bare_app(int(port), api, token, ca)
        return

    import httpx
    from playwright.sync_api import sync_playwright

    from sm_client.views import ids
    from sm_ctl.instance import UpProcess, free_port_pair
    from sm_shared.datadir import DataDir
    from sm_shared.scopes import ALL_SCOPES
    from sm_shared.tokens import issue_access_token
    from tests.web_client import Client, free_port, launch

    with tempfile.TemporaryDirectory(prefix="client-nodes-") as tmp:
        root = Path(tmp) / "data"
        seed(root, args.nodes)
        up = UpProcess.start(root, free_port_pair(), "--no-agent", env={"BROWSER": "/bin/true"})
        bare: subprocess.Popen[bytes] | None = None
        try:
            ready = up.wait_ready(within=180)
            assert ready.web_url, up.output
            data = DataDir(root)
            redis_url = ready.fields["Redis"].split()[0]
            token = issue_access_token(
                data, subject="bench", client_id="bench", scopes=ALL_SCOPES, ttl=3600
            )
            http = httpx.Client(
                base_url=ready.api_url,
                verify=ssl.create_default_context(cafile=str(data.ca_cert)),
                headers={"Authorization": f"Bearer {token}"},
                trust_env=False,
                timeout=30,
            )
            everyone = http.get("/api/v1/nodes", params={"limit": 1000, "sort": "name"}).json()
            all_ids = [n["id"] for n in everyone["items"]]
            mark_online(redis_url, all_ids[: len(all_ids) * 2 // 3])
            first = all_ids[0]
            expected: dict[str, tuple[int, str]] = {}
            for selector in FILTERS:
                page = http.get(
                    "/api/v1/nodes", params={"limit": 1, "sort": "name", "selector": selector}
                ).json()
                expected[selector] = (page["total"], page["items"][0]["id"])

            rows_per_page = page_size()
            print(f"a page holds {rows_per_page} rows (the screen's page size)")
            # sort by CPU: a row of the busiest page that the first page by name lacks
            # (and back: a row of the first page by name that the busiest page lacks)
            by_cpu = cpu_order(http, everyone["items"])
            cpu_page, name_page = by_cpu[:rows_per_page], all_ids[:rows_per_page]
            cpu_marker = next(i for i in cpu_page if i not in set(name_page))
            name_marker = next(i for i in name_page if i not in set(cpu_page))

            # baseline 1: the bare API calls of one page
            def api_page(selector: str | None) -> float:
                began = time.perf_counter()
                params: dict[str, Any] = {"limit": rows_per_page, "sort": "name", "order": "asc"}
                if selector:
                    params["selector"] = selector
                page = http.get("/api/v1/nodes", params=params).json()
                latest = http.get(
                    "/api/v1/metrics/latest",
                    params={"node_id": [n["id"] for n in page["items"]], "limit": rows_per_page},
                )
                assert latest.status_code == 200, latest.text
                return time.perf_counter() - began

            api_page(None)
            api_first = [api_page(None) for _ in range(args.rounds)]
            api_filter = [api_page(FILTERS[i % 2]) for i in range(args.rounds)]

            # baseline 1b: the calls of a sort by CPU (every node, every latest value)
            def api_sort() -> float:
                began = time.perf_counter()
                cpu_order(http, every_node(http))
                return time.perf_counter() - began

            api_sorting = [api_sort() for _ in range(args.rounds)]

            bare_port = free_port()
            bare = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--bare-app",
                    str(bare_port),
                    ready.api_url,
                    token,
                    str(data.ca_cert),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={
                    **{k: v for k, v in os.environ.items() if not k.startswith("SM_")},
                    "BROWSER": "/bin/true",
                },
            )

            class Fleet:  # what tests.web_client.Client needs of a fleet
                web_url = ready.web_url.rstrip("/")
                api_url = ready.api_url
                secret_key = ready.secret_key

                @staticmethod
                def output() -> str:
                    return up.output[-3000:]

            with sync_playwright() as playwright:
                browser = launch(playwright)
                # the client
                client = Client(browser, Fleet(), (1440, 900))  # type: ignore[arg-type]
                client.sign_in()
                first_page: list[float] = []
                filtering: list[float] = []
                sorting: list[float] = []
                for i in range(args.rounds + 1):
                    client.go("dashboard")
                    client.wait_loaded()
                    client.settle(0.5)
                    began = time.perf_counter()
                    client.click(ids.nav("nodes"))
                    until(client.page, ids.node_row(first), ids.NODES_COUNT, len(all_ids))
                    elapsed = time.perf_counter() - began
                    if i:  # the first visit warms the screen's imports and caches
                        first_page.append(elapsed)
                    else:
                        cold = elapsed
                    selector = FILTERS[i % 2]
                    total, first_match = expected[selector]
                    client.settle(0.5)
                    client.type(ids.NODES_FILTER_LABEL, selector)
                    began = time.perf_counter()
                    client.page.keyboard.press("Enter")
                    until(client.page, ids.node_row(first_match), ids.NODES_COUNT, total)
                    filtering.append(time.perf_counter() - began)
                    client.screenshot(f"bench-nodes-filtered-{selector.replace('=', '-')}")
                    client.type(ids.NODES_FILTER_LABEL, "", enter=True)
                    until(client.page, ids.node_row(first), ids.NODES_COUNT, len(all_ids))
                    # sort by CPU (the header), then back by name
                    client.settle(0.5)
                    header = client.wait_id(ids.nodes_sort_by("cpu"))
                    began = time.perf_counter()
                    header.click()
                    until(client.page, ids.node_row(cpu_marker), ids.NODES_COUNT, len(all_ids))
                    sorting.append(time.perf_counter() - began)
                    if not i:
                        client.screenshot("bench-nodes-by-cpu")
                    client.click(ids.nodes_sort_by("name"))
                    until(client.page, ids.node_row(name_marker), ids.NODES_COUNT, len(all_ids))
                client.close()

                # the bare Flet page
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.route(
                    "**/*",
                    lambda route: (
                        route.continue_()
                        if route.request.url.startswith("http://127.0.0.1")
                        else route.abort()
                    ),
                )
                bare_first: list[float] = []
                bare_filter: list[float] = []
                for i in range(args.rounds + 1):
                    page.goto(f"http://127.0.0.1:{bare_port}/", timeout=60_000)
                    page.wait_for_selector("#loading", state="detached", timeout=60_000)
                    page.locator("flt-semantics-placeholder").dispatch_event("click")
                    button = page.locator("[flt-semantics-identifier='bare-load'] [role=button]")
                    button.wait_for(state="attached")
                    page.wait_for_timeout(300)
                    began = time.perf_counter()
                    button.click()
                    until(page, f"bare-row-{first}", "bare-count", len(all_ids))
                    if i:
                        bare_first.append(time.perf_counter() - began)
                    selector = FILTERS[i % 2]
                    total, first_match = expected[selector]
                    field = page.locator("[flt-semantics-identifier='bare-filter'] input").first
                    field.focus()
                    page.wait_for_timeout(200)
                    page.keyboard.insert_text(selector)
                    page.wait_for_timeout(300)
                    began = time.perf_counter()
                    page.keyboard.press("Enter")
                    until(page, f"bare-row-{first_match}", "bare-count", total)
                    bare_filter.append(time.perf_counter() - began)
                page.close()
                browser.close()
        finally:
            if bare is not None:
                bare.terminate()
                bare.wait(10)
            up.stop(within=60)

    print()
    print(f"{args.nodes} nodes, {args.rounds} rounds, medians (every round in ms):")
    print(
        f"  first page, client        {median_ms(first_page):7.0f} ms   (first visit {cold * 1000:.0f} ms; {rounds_text(first_page)})"
    )
    print(
        f"  first page, bare Flet     {median_ms(bare_first):7.0f} ms   ({rounds_text(bare_first)})"
    )
    print(
        f"  first page, API calls     {median_ms(api_first):7.0f} ms   ({rounds_text(api_first)})"
    )
    print(
        f"  filter, client            {median_ms(filtering):7.0f} ms   ({rounds_text(filtering)})"
    )
    print(
        f"  filter, bare Flet         {median_ms(bare_filter):7.0f} ms   ({rounds_text(bare_filter)})"
    )
    print(
        f"  filter, API calls         {median_ms(api_filter):7.0f} ms   ({rounds_text(api_filter)})"
    )
    print(f"  sort by CPU, client       {median_ms(sorting):7.0f} ms   ({rounds_text(sorting)})")
    print(
        f"  sort by CPU, API calls    {median_ms(api_sorting):7.0f} ms   ({rounds_text(api_sorting)})"
    )
    print("ratios:")
    print(
        f"  first page: client / bare Flet {statistics.median(first_page) / statistics.median(bare_first):.2f}, client / API {statistics.median(first_page) / statistics.median(api_first):.1f}"
    )
    print(
        f"  filter:     client / bare Flet {statistics.median(filtering) / statistics.median(bare_filter):.2f}, client / API {statistics.median(filtering) / statistics.median(api_filter):.1f}"
    )
    print(
        f"  sort by CPU: client / API {statistics.median(sorting) / statistics.median(api_sorting):.1f}"
    )
    first_ok = "met" if statistics.median(first_page) < 2 else "MISSED"
    filter_ok = "met" if statistics.median(filtering) < 0.3 else "MISSED"
    print(f"targets: first page < 2 s {first_ok}; filter < 300 ms {filter_ok}")


if __name__ == "__main__":
    main()
