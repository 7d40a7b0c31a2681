"""Strings of the connect area."""

from typing import Final

EN: Final[dict[str, str]] = {
    "connect.title": "Connect to your core",
    "connect.subtitle": "Sign in to manage your fleet.",
    "connect.server": "Core URL",
    "connect.server_hint": "e.g. https://core.example.com:8700",
    "connect.mode.key": "Secret key",
    "connect.mode.password": "Password",
    "connect.key": "Secret key",
    "connect.key_help": "Printed by smctl up (sms1.…). Its fingerprint verifies the core.",
    "connect.username": "User name",
    "connect.password": "Password",
    "connect.remember": "Remember on this device",
    "connect.remember_help": "Otherwise the credentials are kept for this session only.",
    "connect.submit": "Connect",
    "connect.connecting": "Connecting…",
    "connect.known": "Recent servers",
    "connect.known_key": "Secret key",
    "connect.known_user": "User {username}",
    "connect.known_remembered": "signs in automatically",
    "connect.forget": "Forget {server}",
    "connect.confirm.title": "Is this your core?",
    "connect.confirm.body": (
        "This is the first connection to {server}. Compare its CA fingerprint with the one "
        "smctl up printed (“CA fingerprint (SHA-256)”). Trust it only if they are identical: "
        "it is then pinned and checked on every connection."
    ),
    "connect.confirm.fingerprint": "CA fingerprint (SHA-256)",
    "connect.confirm.trust": "They match — trust and sign in",
    "connect.confirm.cancel": "Cancel",
    "connect.failure.invalid_server": "That is not a core URL",
    "connect.failure.unreachable": "The core cannot be reached",
    "connect.failure.malformed_key": "That is not a secret key",
    "connect.failure.wrong_key": "The core refused this secret key",
    "connect.failure.wrong_password": "Wrong user name or password",
    "connect.failure.certificate_mismatch": "Certificate mismatch: this is not the expected core",
    "connect.failure.insufficient_role": "Your role does not allow using this client",
    "connect.failure.refused": "The core refused to sign you in",
    "connect.failure.hint.unreachable": "Check the URL and that the core is running.",
    "connect.failure.hint.certificate_mismatch": (
        "The core's CA is not the one the key names or the one pinned before. "
        "If the core was reinstalled, use its new key, or forget the server and connect again."
    ),
    "connect.failure.hint.insufficient_role": "Ask an administrator for the viewer role or higher.",
    "connect.failure.hint.wrong_key": "The key may have been rotated, or belong to another core.",
}

ZH: Final[dict[str, str]] = {
    "connect.title": "连接到核心服务",
    "connect.subtitle": "登录后即可管理你的服务器集群。",
    "connect.server": "核心服务地址",
    "connect.server_hint": "例如 https://core.example.com:8700",
    "connect.mode.key": "密钥",
    "connect.mode.password": "账号密码",
    "connect.key": "密钥",
    "connect.key_help": "由 smctl up 输出（sms1.…），其中的指纹用于验证核心服务。",
    "connect.username": "用户名",
    "connect.password": "密码",
    "connect.remember": "在此设备上记住",
    "connect.remember_help": "不勾选时，凭据仅在本次会话中保留。",
    "connect.submit": "连接",
    "connect.connecting": "正在连接…",
    "connect.known": "最近使用的服务器",
    "connect.known_key": "密钥登录",
    "connect.known_user": "用户 {username}",
    "connect.known_remembered": "自动登录",
    "connect.forget": "忘记 {server}",
    "connect.confirm.title": "这是你的核心服务吗？",
    "connect.confirm.body": (
        "这是首次连接 {server}。请将下方的 CA 指纹与 smctl up 输出的"
        "“CA fingerprint (SHA-256)”逐一比对，完全一致时再选择信任。"
        "信任后该证书将被固定，此后每次连接都会校验。"
    ),
    "connect.confirm.fingerprint": "CA 指纹（SHA-256）",
    "connect.confirm.trust": "指纹一致，信任并登录",
    "connect.confirm.cancel": "取消",
    "connect.failure.invalid_server": "这不是有效的核心服务地址",
    "connect.failure.unreachable": "无法连接到核心服务",
    "connect.failure.malformed_key": "这不是有效的密钥",
    "connect.failure.wrong_key": "核心服务拒绝了此密钥",
    "connect.failure.wrong_password": "用户名或密码错误",
    "connect.failure.certificate_mismatch": "证书不匹配：对方不是预期的核心服务",
    "connect.failure.insufficient_role": "你的角色无权使用此客户端",
    "connect.failure.refused": "核心服务拒绝了登录",
    "connect.failure.hint.unreachable": "请检查地址是否正确，以及核心服务是否在运行。",
    "connect.failure.hint.certificate_mismatch": (
        "核心服务的 CA 与密钥中的指纹或此前固定的证书不一致。"
        "如果核心服务已重新安装，请使用新的密钥，或忘记该服务器后重新连接。"
    ),
    "connect.failure.hint.insufficient_role": "请联系管理员，为你分配查看者或更高的角色。",
    "connect.failure.hint.wrong_key": "密钥可能已轮换，或属于另一个核心服务。",
}
