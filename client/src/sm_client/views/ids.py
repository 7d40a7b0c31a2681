"""The accessibility identifiers of the controls that tests and screen readers need.

A view wraps such a control in ``ft.Semantics(identifier=ids.X, ...)``; it
reaches the browser's DOM as ``flt-semantics-identifier``, which the browser
tests select on (``[flt-semantics-identifier='connect-submit']``). Change a
name here and the tests follow.
"""

from __future__ import annotations

from typing import Final

# --- the shell ---------------------------------------------------------------------
NAV_RAIL: Final = "nav-rail"  # the navigation rail (wide windows)
NAV_BAR: Final = "nav-bar"  # the bottom navigation bar (narrow windows)
SCREENS: Final = ("dashboard", "nodes", "commands", "audit", "admin", "settings")


def nav(screen: str) -> str:
    """A destination of the rail or bar: ``nav-nodes``."""
    return f"nav-{screen}"


def screen(name: str) -> str:
    """The root of a screen once it is shown: ``screen-nodes``, ``screen-node``, ``screen-connect``."""
    return f"screen-{name}"


# The state panels every screen shows (their label holds the message).
STATE_LOADING: Final = "state-loading"
STATE_EMPTY: Final = "state-empty"
STATE_ERROR: Final = "state-error"  # label: the problem's title and detail
CONFIRM_OK: Final = "confirm-ok"  # the confirming button of a confirmation dialog
CONFIRM_CANCEL: Final = "confirm-cancel"
SNACK: Final = "snack"  # a transient message (label: its text)

# --- connect -----------------------------------------------------------------------
CONNECT_SERVER: Final = "connect-server"
CONNECT_MODE_KEY: Final = "connect-mode-key"
CONNECT_MODE_PASSWORD: Final = "connect-mode-password"
CONNECT_KEY: Final = "connect-key"
CONNECT_USERNAME: Final = "connect-username"
CONNECT_PASSWORD: Final = "connect-password"
CONNECT_REMEMBER: Final = "connect-remember"  # keep the credentials beyond this session
CONNECT_SUBMIT: Final = "connect-submit"
CONNECT_ERROR: Final = "connect-error"  # label: the failure's message
CONNECT_FINGERPRINT: Final = "connect-fingerprint"  # label: the core's CA fingerprint to confirm
CONNECT_TRUST: Final = "connect-trust"  # confirms the fingerprint shown


def known_server(index: int) -> str:
    return f"connect-known-{index}"


# --- dashboard ---------------------------------------------------------------------
DASH_ONLINE: Final = "dashboard-online"  # label: the number of online nodes
DASH_OFFLINE: Final = "dashboard-offline"
DASH_CPU: Final = "dashboard-cpu"
DASH_MEMORY: Final = "dashboard-memory"
DASH_TOP_NODES: Final = "dashboard-top-nodes"
DASH_RECENT_COMMANDS: Final = "dashboard-recent-commands"

# --- nodes -------------------------------------------------------------------------
NODES_SEARCH: Final = "nodes-search"
NODES_FILTER_STATUS: Final = "nodes-filter-status"
NODES_FILTER_GROUP: Final = "nodes-filter-group"
NODES_FILTER_LABEL: Final = "nodes-filter-label"  # a text field: key=value
NODES_SORT: Final = "nodes-sort"
NODES_COUNT: Final = "nodes-count"  # label: how many nodes match
NODES_SELECT_ALL: Final = "nodes-select-all"
NODES_BULK_RUN: Final = "nodes-bulk-run"
NODES_BULK_LABELS: Final = "nodes-bulk-labels"
NODES_BULK_GROUP: Final = "nodes-bulk-group"
NODES_PAGE_NEXT: Final = "nodes-page-next"
NODES_PAGE_PREVIOUS: Final = "nodes-page-previous"
NODES_FILTERS: Final = (
    "nodes-filters"  # phones: opens the filter panel (labels, status, group, sort)
)


def node_row(node_id: str) -> str:
    """A row of the node list (tapping it opens the node)."""
    return f"node-row-{node_id}"


def node_select(node_id: str) -> str:
    return f"node-select-{node_id}"


def nodes_sort_by(key: str) -> str:
    """A sortable column header of the wide table (tapping it sorts; again flips)."""
    return f"nodes-sort-by-{key}"


# --- node detail -------------------------------------------------------------------
NODE_TITLE: Final = "node-title"  # label: the node's name
NODE_STATUS: Final = "node-status"
NODE_FACTS: Final = "node-facts"
NODE_GAUGES: Final = "node-gauges"
NODE_SERVICES: Final = "node-services"
NODE_SERVICE_UNIT: Final = "node-service-unit"  # a text field for a unit not listed
NODE_LOGS: Final = "node-logs"  # label: the lines shown
NODE_LOGS_SOURCE: Final = "node-logs-source"
NODE_LOGS_FOLLOW: Final = "node-logs-follow"
NODE_EXECUTIONS: Final = "node-executions"
NODE_RUN: Final = "node-run"  # opens the composer targeting this node
CHART_METRICS: Final = ("cpu", "load", "memory", "disk", "network")
RANGES: Final = ("1h", "24h", "7d", "30d")


def node_range(span: str) -> str:
    """The chart range chooser: ``node-range-1h``."""
    return f"node-range-{span}"


def node_chart(metric: str) -> str:
    """A trend chart; its label holds ``points: N`` (N plotted samples)."""
    return f"node-chart-{metric}"


def service_action(action: str, unit: str) -> str:
    """``service-restart-nginx.service``; ``unit`` is the typed unit for the field's buttons."""
    return f"service-{action}-{unit}"


NODE_BACK: Final = "node-back"  # back to the node list
NODE_EDIT: Final = "node-edit"  # opens the labels/group dialog (nodes:write)
NODE_EDIT_LABELS: Final = "node-edit-labels"  # a text field: key=value per line
NODE_EDIT_GROUP: Final = "node-edit-group"
NODE_EDIT_SAVE: Final = "node-edit-save"
NODE_EDIT_ERROR: Final = "node-edit-error"  # label: the core's refusal
NODE_SERVICES_REFRESH: Final = "node-services-refresh"  # lists the services again
NODE_SERVICES_FILTER: Final = "node-services-filter"
NODE_SERVICE_RESULT: Final = "node-service-result"  # label: the last action's outcome
NODE_LOGS_LINES: Final = "node-logs-lines"
NODE_LOGS_SHOW: Final = "node-logs-show"
NODE_LOGS_ERROR: Final = "node-logs-error"  # label: the node's refusal or the failure


def node_tab(name: str) -> str:
    """The node screen's sections: ``node-tab-services`` / ``-logs`` / ``-executions``."""
    return f"node-tab-{name}"


def node_command(command_id: str) -> str:
    """A recent command of the node (tapping it opens ``/commands/<id>``)."""
    return f"node-command-{command_id}"


# --- commands ----------------------------------------------------------------------
COMMANDS_NEW: Final = "commands-new"  # opens the composer
COMMANDS_HISTORY: Final = "commands-history"
COMPOSER_TARGET_MODE: Final = "composer-target-mode"  # nodes | groups | labels
COMPOSER_TARGET: Final = "composer-target"
COMPOSER_MATCHED: Final = "composer-matched"  # label: the live count of matched nodes
COMPOSER_KIND: Final = "composer-kind"
COMPOSER_SCRIPT: Final = "composer-script"
COMPOSER_TIMEOUT: Final = "composer-timeout"
COMPOSER_BATCH: Final = "composer-batch"
COMPOSER_RUN: Final = "composer-run"
COMMAND_CANCEL: Final = "command-cancel"
COMMAND_STATE: Final = "command-state"  # label: the command's summary


def composer_node(node_id: str) -> str:
    """A node's checkbox in the composer's node picker."""
    return f"composer-node-{node_id}"


def command_row(command_id: str) -> str:
    return f"command-row-{command_id}"


def execution_row(node_id: str) -> str:
    """A node's execution in the live view; label: state and exit code."""
    return f"execution-{node_id}"


def execution_output(node_id: str) -> str:
    """That execution's output text; label: stdout (and stderr) as shown."""
    return f"execution-output-{node_id}"


# --- audit -------------------------------------------------------------------------
AUDIT_LIST: Final = "audit-list"
AUDIT_FILTER_ACTION: Final = "audit-filter-action"
AUDIT_FILTER_ACTOR: Final = "audit-filter-actor"
AUDIT_VERIFY: Final = "audit-verify"
AUDIT_VERIFY_RESULT: Final = "audit-verify-result"  # label: ok, or the broken record


def audit_row(seq: int) -> str:
    return f"audit-row-{seq}"


# --- admin -------------------------------------------------------------------------
ADMIN_TAB_USERS: Final = "admin-tab-users"
ADMIN_TAB_ROLES: Final = "admin-tab-roles"
ADMIN_TAB_TOKENS: Final = "admin-tab-tokens"
ADMIN_TAB_GROUPS: Final = "admin-tab-groups"
ADMIN_USER_NEW: Final = "admin-user-new"
ADMIN_TOKEN_NEW: Final = "admin-token-new"
ADMIN_GROUP_NEW: Final = "admin-group-new"


ADMIN_TAB_CLIENTS: Final = "admin-tab-clients"
ADMIN_ROLE_NEW: Final = "admin-role-new"
ADMIN_CLIENT_NEW: Final = "admin-client-new"
ADMIN_SECRET: Final = "admin-secret"  # a secret shown once (token text, client secret); label: it
ADMIN_FORM_SUBMIT: Final = "admin-form-submit"  # the submitting button of an admin form dialog
ADMIN_FORM_ERROR: Final = "admin-form-error"  # label: the core's refusal (title: detail)


def admin_token_copy(token_id: str) -> str:
    """Copies the token's text; shown with the text, once, right after creating it."""
    return f"admin-token-copy-{token_id}"


def admin_token_revoke(token_id: str) -> str:
    return f"admin-token-revoke-{token_id}"


def admin_token_row(token_id: str) -> str:
    """A token of the list; label: its description and state."""
    return f"admin-token-{token_id}"


def admin_user_row(username: str) -> str:
    """A user of the list; label: name, role and status."""
    return f"admin-user-{username}"


def admin_user_action(action: str, username: str) -> str:
    """``admin-user-role-alice`` / ``-password-`` / ``-disable-`` / ``-enable-`` / ``-delete-``."""
    return f"admin-user-{action}-{username}"


def admin_role_action(action: str, role: str) -> str:
    """``admin-role-edit-auditor`` / ``admin-role-delete-auditor``."""
    return f"admin-role-{action}-{role}"


def admin_group_row(name: str) -> str:
    return f"admin-group-{name}"


def admin_group_action(action: str, name: str) -> str:
    """``admin-group-edit-web`` / ``admin-group-delete-web``."""
    return f"admin-group-{action}-{name}"


def admin_client_action(action: str, client_id: str) -> str:
    """``admin-client-edit-backup`` / ``admin-client-delete-backup`` / ``admin-client-copy-backup``."""
    return f"admin-client-{action}-{client_id}"


# --- settings ----------------------------------------------------------------------
SETTINGS_SERVER: Final = "settings-server"  # label: the connected server and identity
SETTINGS_SIGN_OUT: Final = "settings-sign-out"


def settings_theme(mode: str) -> str:
    """``settings-theme-light`` / ``-dark`` / ``-system``."""
    return f"settings-theme-{mode}"


def settings_language(code: str) -> str:
    """``settings-language-en`` / ``settings-language-zh``."""
    return f"settings-language-{code}"
