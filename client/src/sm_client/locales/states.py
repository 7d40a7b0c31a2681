"""Strings of the loading, empty and error panels every screen shows."""

from typing import Final

EN: Final[dict[str, str]] = {
    "states.loading": "Loading…",
    "states.empty": "Nothing here yet",
    "states.error": "Something went wrong",
    "states.retry": "Try again",
    "states.unreachable": "The core cannot be reached",
    "states.reconnecting": "Live updates paused — reconnecting…",
    "states.confirm": "Confirm",
    "states.cancel": "Cancel",
}

ZH: Final[dict[str, str]] = {
    "states.loading": "加载中…",
    "states.empty": "暂无内容",
    "states.error": "出错了",
    "states.retry": "重试",
    "states.unreachable": "无法连接到核心服务",
    "states.reconnecting": "实时更新已暂停，正在重新连接…",
    "states.confirm": "确认",
    "states.cancel": "取消",
}
