"""The entry point ``flet build`` packages (apk, ipa, linux, macos, windows).

``[tool.flet.app]`` in ``client/pyproject.toml`` names this module. A packaged
app has no command line: it always opens as a window (the desktop's or the
phone's), like ``sm-client`` without ``--web``.
"""

import sys

from sm_client.main import main

if __name__ == "__main__":
    sys.exit(main([]))
