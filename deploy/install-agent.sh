#!/bin/sh
# Install the Server Manager node agent on this machine (as root).
#
#   sh install-agent.sh --server https://core.example.net:8101 --key sme1.… \
#       [--package SPEC] [--gateway-url wss://…/agent/ws]… [--python python3]
#       [--prefix DIR] [--no-systemd]
#       [--allow-shell] [--allow-service UNIT[,UNIT…]] [--allow-logs]
#
# Creates a virtual environment under /opt/sm-agent with the system Python
# (3.11 or newer), pip-installs the agent into it (SPEC: a wheel, a source
# directory, or a requirement; default "sm-agent" from the package index),
# creates the unprivileged user sm-agent, writes /etc/sm-agent/agent.toml
# (0600, owner sm-agent) with the core's URL and the enrollment key, installs
# the systemd unit and starts it. The agent enrolls on its first start and
# removes the key from the file.
#
# --prefix DIR puts every path under DIR (DIR/opt/sm-agent, DIR/etc/…);
# --no-systemd skips the user, the ownership and systemctl (for trying the
# installation out, and for the tests).
#
# Remote control is off unless enabled here (or later in agent.toml):
# --allow-shell lets the core run shell commands (as the user sm-agent, in
# the unit's sandbox); --allow-service UNITS lets it control those units
# (comma-separated; ".service" added when no type is named) and installs a
# polkit rule granting sm-agent start/stop/restart/reload of exactly them;
# --allow-logs lets it read journald and files under /var/log and adds
# sm-agent to the systemd-journal group (and adm, where /var/log files are
# group-readable by it).
set -eu

SERVER=""
KEY=""
PACKAGE="sm-agent"
PYTHON="python3"
PREFIX=""
SYSTEMD=1
GATEWAY_URLS=""
ALLOW_SHELL=0
ALLOW_LOGS=0
SERVICE_UNITS=""
HERE=$(cd "$(dirname "$0")" && pwd)

die() {
    echo "install-agent: $*" >&2
    exit 1
}

usage() {
    sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --server) [ $# -ge 2 ] || die "--server needs a value"; SERVER=$2; shift 2 ;;
        --key) [ $# -ge 2 ] || die "--key needs a value"; KEY=$2; shift 2 ;;
        --package) [ $# -ge 2 ] || die "--package needs a value"; PACKAGE=$2; shift 2 ;;
        --python) [ $# -ge 2 ] || die "--python needs a value"; PYTHON=$2; shift 2 ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; PREFIX=$2; shift 2 ;;
        --gateway-url)
            [ $# -ge 2 ] || die "--gateway-url needs a value"
            case "$2" in wss://*) ;; *) die "--gateway-url must be a wss:// URL, not '$2'" ;; esac
            GATEWAY_URLS="${GATEWAY_URLS}${GATEWAY_URLS:+, }\"$2\""
            shift 2
            ;;
        --no-systemd) SYSTEMD=0; shift ;;
        --allow-shell) ALLOW_SHELL=1; shift ;;
        --allow-logs) ALLOW_LOGS=1; shift ;;
        --allow-service)
            [ $# -ge 2 ] || die "--allow-service needs the units (nginx,app-worker.service)"
            set -f # unit names are not file patterns
            for unit in $(echo "$2" | tr ',' ' '); do
                case "$unit" in
                    *[!A-Za-z0-9@._:-]*) die "--allow-service: '$unit' is not a unit name" ;;
                esac
                case "$unit" in
                    # The unit types sm_agent.policy.UNIT_SUFFIXES knows (the agent's names).
                    *.service | *.socket | *.target | *.timer | *.mount | *.automount) ;;
                    *.path | *.slice | *.scope | *.swap | *.device) ;;
                    *) unit="$unit.service" ;;
                esac
                SERVICE_UNITS="${SERVICE_UNITS:+$SERVICE_UNITS, }\"$unit\""
            done
            set +f
            [ -n "$SERVICE_UNITS" ] || die "--allow-service needs at least one unit"
            shift 2
            ;;
        -h | --help) usage 0 ;;
        *) echo "install-agent: unknown argument '$1'" >&2; usage 2 ;;
    esac
done

[ -n "$SERVER" ] || die "--server is required (the core's URL, https://host:port)"
[ -n "$KEY" ] || die "--key is required (the enrollment key the core printed, sme1.…)"
case "$SERVER" in https://*) ;; *) die "--server must be an https:// URL, not '$SERVER'" ;; esac
case "$KEY" in sme1.* | smt1.*) ;; *) die "--key must be an enrollment key (sme1.…) or token (smt1.…)" ;; esac
case "$SERVER$KEY" in *\"* | *\\*) die "the server URL and the key cannot contain quotes or backslashes" ;; esac
if [ "$SYSTEMD" = 1 ] && [ "$(id -u)" != 0 ]; then
    die "run as root (or with --no-systemd --prefix DIR to try it out)"
fi

command -v "$PYTHON" >/dev/null 2>&1 || die "no $PYTHON: install Python 3.11 or newer (Debian: apt-get install python3 python3-venv)"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    found=$("$PYTHON" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))')
    die "sm-agent needs Python 3.11 or newer; $PYTHON is $found (pass --python /path/to/python3.11)"
fi
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
    || die "$PYTHON cannot create virtual environments (Debian: apt-get install python3-venv)"

VENV="$PREFIX/opt/sm-agent"
CONFIG_DIR="$PREFIX/etc/sm-agent"
CONFIG="$CONFIG_DIR/agent.toml"
UNIT_DIR="$PREFIX/etc/systemd/system"
STATE_DIR="$PREFIX/var/lib/sm-agent"

echo "install-agent: virtual environment $VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade "$PACKAGE"
"$VENV/bin/sm-agent" --version

if [ "$SYSTEMD" = 1 ] && ! id sm-agent >/dev/null 2>&1; then
    echo "install-agent: creating the system user sm-agent"
    useradd --system --home-dir /var/lib/sm-agent --no-create-home \
        --shell /usr/sbin/nologin sm-agent
fi

umask 077
mkdir -p "$CONFIG_DIR"
chmod 0700 "$CONFIG_DIR"
TMP="$CONFIG.tmp.$$"
{
    echo "# Written by install-agent.sh. The agent removes enrollment_key after enrolling."
    echo "server = \"$SERVER\""
    echo "enrollment_key = \"$KEY\""
    echo "state_dir = \"$STATE_DIR\""
    if [ -n "$GATEWAY_URLS" ]; then
        echo "gateway_urls = [$GATEWAY_URLS]"
    fi
    echo "# Remote control (sm-agent README: what each allows, and the grants it needs)."
    [ "$ALLOW_SHELL" = 1 ] && echo "allow_shell = true" || echo "allow_shell = false"
    if [ -n "$SERVICE_UNITS" ]; then
        echo "allow_service = true"
        echo "service_units = [$SERVICE_UNITS]"
    else
        echo "allow_service = false"
    fi
    if [ "$ALLOW_LOGS" = 1 ]; then
        echo "allow_logs = true"
        echo "log_roots = [\"/var/log\"]"
    else
        echo "allow_logs = false"
    fi
} >"$TMP"
chmod 0600 "$TMP"
if [ "$SYSTEMD" = 1 ]; then
    chown sm-agent:sm-agent "$CONFIG_DIR" "$TMP"
fi
mv "$TMP" "$CONFIG"
echo "install-agent: configuration $CONFIG"

mkdir -p "$UNIT_DIR"
umask 022
UNIT_SOURCE="$HERE/systemd/sm-agent.service"
[ -f "$UNIT_SOURCE" ] || die "no unit file at $UNIT_SOURCE (run the script from the repository's deploy/)"
sed "s#/opt/sm-agent/#$VENV/#; s#/etc/sm-agent/#$CONFIG_DIR/#g" "$UNIT_SOURCE" >"$UNIT_DIR/sm-agent.service"
chmod 0644 "$UNIT_DIR/sm-agent.service"
echo "install-agent: unit $UNIT_DIR/sm-agent.service"

if [ -n "$SERVICE_UNITS" ]; then
    RULES_DIR="$PREFIX/etc/polkit-1/rules.d"
    RULE_SOURCE="$HERE/polkit/50-sm-agent.rules"
    [ -f "$RULE_SOURCE" ] || die "no polkit rule template at $RULE_SOURCE"
    mkdir -p "$RULES_DIR"
    sed "s#@UNITS@#$SERVICE_UNITS#" "$RULE_SOURCE" >"$RULES_DIR/50-sm-agent.rules"
    chmod 0644 "$RULES_DIR/50-sm-agent.rules"
    echo "install-agent: polkit rule $RULES_DIR/50-sm-agent.rules (units: $SERVICE_UNITS)"
fi
if [ "$ALLOW_LOGS" = 1 ] && [ "$SYSTEMD" = 1 ]; then
    for group in systemd-journal adm; do
        if getent group "$group" >/dev/null 2>&1; then
            usermod -a -G "$group" sm-agent
            echo "install-agent: sm-agent added to the group $group"
        fi
    done
fi

if [ "$SYSTEMD" = 1 ]; then
    systemctl daemon-reload
    systemctl enable --now sm-agent
    echo "install-agent: started; follow it with: journalctl -u sm-agent -f"
else
    echo "install-agent: not started (--no-systemd); run: $VENV/bin/sm-agent run --config $CONFIG"
fi
