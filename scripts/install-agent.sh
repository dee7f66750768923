#!/usr/bin/env bash
# Install an Easy Enclave agent trust domain on a TDX host, started at boot.
#
# What it does, in order:
#   1. installs ee-host: copies a built binary (--binary PATH) or builds it
#      from this checkout with `cargo install --locked --path host`;
#   2. runs `ee-host preflight` and stops if the host is not ready
#      (--skip-preflight to continue anyway, e.g. while QGS is being set up);
#   3. copies the VM spec to CONFIG_DIR/agents/NAME.json, where NAME is the
#      spec's "name", and checks it there with `ee-host launch --dry-run`
#      (relative paths in a spec would point elsewhere after the copy, so
#      they are refused at this step);
#   4. installs the systemd template unit ee-agent@.service, which runs
#      `ee-host launch --foreground` (ee-host becomes QEMU, so systemd
#      supervises the VM and restarts it on failure) and `ee-host stop`;
#   5. enables and starts ee-agent@NAME.service and prints where the logs are.
#
# --uninstall NAME reverses 4-5 for one agent: stops and disables the unit,
# stops the VM, deletes any iptables rules tagged "ee-host:NAME", and removes
# the agent's spec (the template unit and ee-host stay for other agents).
#
# --dry-run prints every action (commands prefixed with "+", files with
# their full contents) and changes nothing; it needs neither root nor an
# installed ee-host.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: install-agent.sh --spec FILE [options]
       install-agent.sh --uninstall NAME [options]

Install an Easy Enclave agent trust domain as a systemd service.

Options:
  --spec FILE          VM spec (JSON) of the agent; its "name" names the unit
  --binary PATH        install this ee-host binary (default: build it from
                       this checkout with cargo install --locked --path host)
  --prefix DIR         install ee-host to DIR/bin (default /usr/local)
  --config-dir DIR     agent specs go to DIR/agents (default /etc/easy-enclave)
  --state-dir DIR      ee-host state directory (default /var/lib/easy-enclave)
  --unit-dir DIR       systemd unit directory (default /etc/systemd/system)
  --skip-preflight     continue even if `ee-host preflight` fails
  --no-start           install and enable the unit, but do not start it now
  --uninstall NAME     stop, disable and remove agent NAME
  --dry-run            print every action instead of doing it
  -h, --help           show this help

Exit status: 0 done, 1 a step failed, 2 bad arguments.
EOF
}

die() {
    printf 'install-agent: error: %s\n' "$*" >&2
    exit 1
}
usage_error() {
    printf 'install-agent: %s\n\n' "$*" >&2
    usage >&2
    exit 2
}
say() { printf '[install-agent] %s\n' "$*"; }

REPO_DIR=$(cd "$(dirname "$0")/.." && pwd)
SPEC=""
BINARY=""
PREFIX=/usr/local
CONFIG_DIR=/etc/easy-enclave
STATE_DIR=/var/lib/easy-enclave
UNIT_DIR=/etc/systemd/system
SKIP_PREFLIGHT=0
START=1
UNINSTALL=""
DRY_RUN=0

need_value() {
    if [ $# -lt 2 ] || [ -z "$2" ]; then usage_error "$1 needs a value"; fi
}
while [ $# -gt 0 ]; do
    case "$1" in
        --spec) need_value "$@"; SPEC=$2; shift 2 ;;
        --binary) need_value "$@"; BINARY=$2; shift 2 ;;
        --prefix) need_value "$@"; PREFIX=$2; shift 2 ;;
        --config-dir) need_value "$@"; CONFIG_DIR=$2; shift 2 ;;
        --state-dir) need_value "$@"; STATE_DIR=$2; shift 2 ;;
        --unit-dir) need_value "$@"; UNIT_DIR=$2; shift 2 ;;
        --skip-preflight) SKIP_PREFLIGHT=1; shift ;;
        --no-start) START=0; shift ;;
        --uninstall) need_value "$@"; UNINSTALL=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
done

EE_HOST="$PREFIX/bin/ee-host"
UNIT_TEMPLATE="ee-agent@.service"

# Run a command, or print it in dry-run mode.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# Write stdin to a file with a mode, or print it in dry-run mode.
write_file() {
    local path=$1 mode=$2 content
    content=$(cat)
    if [ "$DRY_RUN" = 1 ]; then
        printf '+ write %s (mode %s):\n' "$path" "$mode"
        printf '%s\n' "$content" | sed 's/^/| /'
    else
        local tmp="$path.tmp.$$"
        printf '%s\n' "$content" >"$tmp"
        chmod "$mode" "$tmp"
        mv "$tmp" "$path"
    fi
}

check_name() {
    [[ "$1" =~ ^[a-z0-9][a-z0-9-]{0,47}$ ]] ||
        die "agent name '$1' must be 1-48 lowercase letters, digits and '-' (not starting with '-')"
}

if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (it installs a binary and a systemd unit), or pass --dry-run"
fi

if [ -n "$UNINSTALL" ]; then
    [ -z "$SPEC" ] || usage_error "--uninstall and --spec exclude each other"
    NAME=$UNINSTALL
    check_name "$NAME"
    say "uninstalling agent $NAME"
    run systemctl disable --now "ee-agent@$NAME.service"
    run env EE_HOST_STATE_DIR="$STATE_DIR" "$EE_HOST" stop --missing-ok "$NAME"
    # ee-host stop deletes the rules it recorded; this catches any left behind.
    for table in nat filter; do
        if [ "$DRY_RUN" = 1 ]; then
            printf '+ iptables -t %s -S | grep -- "--comment ee-host:%s" | (delete each rule with iptables -t %s -D ...)\n' \
                "$table" "$NAME" "$table"
        elif command -v iptables >/dev/null; then
            iptables -t "$table" -S | grep -E -- "--comment \"?ee-host:$NAME\"?( |$)" |
                while read -r verb rule; do
                    [ "$verb" = "-A" ] || continue
                    read -ra args <<<"$rule"
                    iptables -t "$table" -D "${args[@]}"
                done
        fi
    done
    run rm -f "$CONFIG_DIR/agents/$NAME.json"
    say "agent $NAME removed (its serial log stays in $STATE_DIR/vms/$NAME/)"
    exit 0
fi

[ -n "$SPEC" ] || usage_error "--spec FILE is required"
[ -f "$SPEC" ] || die "spec $SPEC does not exist"
# The VM name comes from the spec, so the unit instance and `ee-host stop`
# always agree with it. "name" is the only field of that name in the spec
# format (version 1), at any depth, so the first match is the VM's name;
# `ee-host launch --dry-run` in step 3 then checks the whole spec.
NAME=$(grep -o '"name"[[:space:]]*:[[:space:]]*"[^"]*"' "$SPEC" | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/' || true)
[ -n "$NAME" ] || die "cannot find the \"name\" field in $SPEC"
check_name "$NAME"
INSTALLED_SPEC="$CONFIG_DIR/agents/$NAME.json"
UNIT="ee-agent@$NAME.service"

say "1/5 install ee-host to $EE_HOST"
if [ -n "$BINARY" ]; then
    [ -x "$BINARY" ] || die "--binary $BINARY is not an executable file"
    run install -D -m 0755 "$BINARY" "$EE_HOST"
else
    command -v cargo >/dev/null || [ "$DRY_RUN" = 1 ] ||
        die "cargo not found: install Rust (https://rustup.rs) or pass --binary PATH"
    run cargo install --locked --path "$REPO_DIR/host" --root "$PREFIX"
fi

say "2/5 preflight"
if [ "$DRY_RUN" = 1 ]; then
    run "$EE_HOST" preflight
elif ! "$EE_HOST" preflight; then
    if [ "$SKIP_PREFLIGHT" = 1 ]; then
        say "preflight failed; continuing because of --skip-preflight"
    else
        die "preflight failed: fix the checks above, or pass --skip-preflight"
    fi
fi

say "3/5 install spec $SPEC as $INSTALLED_SPEC"
# A running agent of the same name would make the check below refuse the
# name and its ports: stop it first (the unit starts it again in step 5).
if [ "$DRY_RUN" = 1 ]; then
    say "(only if $UNIT is running:)"
    run systemctl stop "$UNIT"
elif systemctl is-active --quiet "$UNIT" 2>/dev/null; then
    run systemctl stop "$UNIT"
fi
run install -D -m 0644 "$SPEC" "$INSTALLED_SPEC"
run env EE_HOST_STATE_DIR="$STATE_DIR" "$EE_HOST" launch --dry-run --format json "$INSTALLED_SPEC"

say "4/5 install systemd unit $UNIT_DIR/$UNIT_TEMPLATE"
run mkdir -p "$UNIT_DIR"
write_file "$UNIT_DIR/$UNIT_TEMPLATE" 0644 <<EOF
# Installed by easy-enclave scripts/install-agent.sh.
# One instance per agent: ee-agent@NAME.service runs the VM specified in
# $CONFIG_DIR/agents/NAME.json.
[Unit]
Description=Easy Enclave agent trust domain %i
Documentation=https://github.com/easy-enclave/easy-enclave/tree/main/host
ConditionPathExists=$CONFIG_DIR/agents/%i.json
# The TD gets its quotes from the quote generation service.
Wants=network-online.target qgsd.service
After=network-online.target qgsd.service

[Service]
# ee-host checks the spec and the host, records the VM, then execs QEMU:
# the service's main process is QEMU itself.
Type=exec
Environment=EE_HOST_STATE_DIR=$STATE_DIR
# A record left by a crash or a host reboot would block the name.
ExecStartPre=$EE_HOST stop --missing-ok --timeout 0 %i
ExecStart=$EE_HOST launch --foreground $CONFIG_DIR/agents/%i.json
# ACPI power-down, then SIGTERM, then SIGKILL; removes the record and firewall rules.
ExecStop=$EE_HOST stop --timeout 30 %i
ExecStopPost=$EE_HOST stop --missing-ok --timeout 0 %i
TimeoutStopSec=60
Restart=on-failure
RestartSec=10

[Install]
WantedBy=multi-user.target
EOF

say "5/5 enable $UNIT"
run systemctl daemon-reload
if [ "$START" = 1 ]; then
    run systemctl enable --now "$UNIT"
else
    run systemctl enable "$UNIT"
fi

cat <<EOF
[install-agent] done. Agent $NAME:
  status:          systemctl status $UNIT    (or: $EE_HOST status $NAME)
  guest console:   $EE_HOST logs -f $NAME    ($STATE_DIR/vms/$NAME/serial.log)
  QEMU and ee-host messages: journalctl -u $UNIT
  stop / start:    systemctl stop $UNIT / systemctl start $UNIT
  uninstall:       $0 --uninstall $NAME
EOF
