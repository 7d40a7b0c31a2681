"""The fonts the client bundles (``sm_client/assets/fonts``).

The web app loads no font from the internet, and Flutter's own fallback for
Chinese would fetch one: Chinese text is drawn in this bundled subset of
Noto Sans SC (the theme font while the language is Chinese, and wherever
Chinese shows in an English screen, such as the language's own name).
Scripts, command output, logs, ids and fingerprints are drawn in a subset of
JetBrains Mono ("monospace" names no font in a browser), falling back to
Noto Sans SC for Chinese.
"""

from typing import Final

CJK_FONT: Final = "Noto Sans SC"
MONO_FONT: Final = "JetBrains Mono"
FONTS: Final = {
    CJK_FONT: "fonts/NotoSansSC-Regular.otf",
    MONO_FONT: "fonts/JetBrainsMono-Regular.ttf",
}
