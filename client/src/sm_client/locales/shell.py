"""Strings of the app shell: the window title and the navigation."""

from typing import Final

EN: Final[dict[str, str]] = {
    "shell.title": "Server Manager",
    "shell.nav.dashboard": "Dashboard",
    "shell.nav.nodes": "Nodes",
    "shell.nav.commands": "Commands",
    "shell.nav.audit": "Audit",
    "shell.nav.admin": "Admin",
    "shell.nav.settings": "Settings",
}

ZH: Final[dict[str, str]] = {
    "shell.title": "服务器管理",
    "shell.nav.dashboard": "仪表盘",
    "shell.nav.nodes": "节点",
    "shell.nav.commands": "命令",
    "shell.nav.audit": "审计",
    "shell.nav.admin": "管理",
    "shell.nav.settings": "设置",
}
