"""What the dependencies import but never use stays unloaded until used (memory of the agent)."""

from __future__ import annotations

import subprocess
import sys


def test_importlib_metadata_is_loaded_only_when_used() -> None:
    script = (
        "import sys\n"
        "import sm_agent.__main__\n"
        "assert 'websockets.version' in sys.modules\n"
        "assert 'zipfile' not in sys.modules, 'importlib.metadata was executed'\n"
        "import importlib.metadata\n"
        "assert importlib.metadata.version('psutil')\n"
        "assert 'zipfile' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
