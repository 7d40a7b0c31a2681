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


def test_cryptography_is_loaded_with_the_first_order_only() -> None:
    """About 10 MB of memory: a node that is never sent an order never loads it."""
    script = (
        "import sys\n"
        "import sm_agent.__main__, sm_agent.link, sm_agent.control\n"
        "from sm_agent.orders import load_public_key\n"
        "key = load_public_key('A' * 43)\n"
        "assert key is not None\n"
        "assert not [m for m in sys.modules if m.startswith('cryptography')], 'loaded at start'\n"
        "assert key.verifies(b'x' * 64, b'order') is False\n"
        "assert 'cryptography' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
