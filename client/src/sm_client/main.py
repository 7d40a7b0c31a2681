"""``sm-client``: the Server Manager client, in a browser (``--web``) or a desktop window.

``--web`` serves the app on ``--host``/``--port`` with everything it needs
bundled (``no_cdn``: it loads with no internet access); ``smctl up`` starts it
so on loopback and prints its URL. Without ``--web`` the app opens in the Flet
desktop runtime (downloaded by flet-desktop on first run).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8550
# Fonts and images the app serves (whatever the working directory).
ASSETS = Path(__file__).parent / "assets"


def parser() -> argparse.ArgumentParser:
    ask = argparse.ArgumentParser(
        prog="sm-client",
        description="The Server Manager client: a web app (--web) or a desktop window.",
    )
    ask.add_argument(
        "--web",
        action="store_true",
        help="serve the app for browsers instead of opening a desktop window",
    )
    ask.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address the web app listens on (default {DEFAULT_HOST}; loopback only)",
    )
    ask.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port the web app listens on (default {DEFAULT_PORT})",
    )
    ask.add_argument(
        "--server",
        default=os.environ.get("SM_SERVER", ""),
        help="the core's URL the connect screen starts with (https://host:port; env SM_SERVER)",
    )
    ask.add_argument(
        "--open",
        action="store_true",
        help="with --web: open the system's browser on the app's URL",
    )
    return ask


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("SM_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Flet (and what it imports) is loaded only now: --help answers at once.
    import flet as ft

    from sm_client.app import app_main  # every screen is imported once, here

    if args.web:
        if not args.open:
            os.environ["FLET_FORCE_WEB_SERVER"] = "1"  # serve only: no browser
        print(f"Server Manager web client: http://{args.host}:{args.port}", flush=True)
        ft.run(
            app_main(args.server),
            view=ft.AppView.WEB_BROWSER,
            host=args.host,
            port=args.port,
            no_cdn=True,
            assets_dir=str(ASSETS),
        )
    else:
        ft.run(app_main(args.server), view=ft.AppView.FLET_APP, assets_dir=str(ASSETS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
