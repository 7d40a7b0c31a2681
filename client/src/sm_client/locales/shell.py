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
    "shell.live": "Live",
    "shell.connecting": "Connecting…",
    "shell.reconnecting": "Reconnecting…",
    "shell.not_found": "Nothing at this address",
    "shell.not_found_detail": "No screen shows {route}.",
    "shell.missing": "This screen is not available",
    "shell.missing_detail": "{screen} could not be loaded: {error}",
    "shell.admin_only": "Administrators only",
    "shell.admin_only_detail": "Your role does not include the admin scope.",
}

ZH: Final[dict[str, str]] = {
    "shell.title": "服务器管理",
    "shell.nav.dashboard": "仪表盘",
    "shell.nav.nodes": "节点",
    "shell.nav.commands": "命令",
    "shell.nav.audit": "审计",
    "shell.nav.admin": "管理",
    "shell.nav.settings": "设置",
    "shell.live": "实时",
    "shell.connecting": "正在连接…",
    "shell.reconnecting": "正在重连…",
    "shell.not_found": "此地址没有内容",
    "shell.not_found_detail": "没有页面对应 {route}。",
    "shell.missing": "此页面暂不可用",
    "shell.missing_detail": "无法加载 {screen}：{error}",
    "shell.admin_only": "仅限管理员",
    "shell.admin_only_detail": "你的角色不包含管理权限。",
}
