#!/usr/bin/env bash
# Real remote-storage servers on loopback for the `services` tests (tests/integration/test_share_remotes.py): DVC ssh and s3
# remotes that `awd-bench store push|pull` and `dvc push|pull` talk to, started WITHOUT systemd.
#
#   scripts/test-services.sh start    install what is missing (root only), start sshd on 127.0.0.1:2222 (key login
#                                     for a test user only) and moto's S3 server on 127.0.0.1:5055; wait until both
#                                     answer; write the settings the tests read to $AWD_SERVICES_DIR/env
#   scripts/test-services.sh stop     stop the two servers this script started (by their pid files); keys and the
#                                     test user stay, so the next start is quick
#   scripts/test-services.sh status   which of them answers; exit 0 only when both do
#
# `start` is idempotent: a server that already answers is left as it is. Nothing listens beyond 127.0.0.1.
# Layout (AWD_SERVICES_DIR, default /var/lib/awd-services): sshd_config + host key, client_ed25519 (the test user's
# key; given to $SUDO_UID when run through sudo, so that the tests can read it), run/ (pid files), log/, env.
# Knobs: AWD_SSH_PORT (2222), AWD_SSH_USER (awdremote), AWD_S3_PORT (5055), AWD_SERVICES_TIMEOUT (seconds, 30),
# AWD_PYTHON (the venv python that has moto[server]; default .venv/bin/python of this checkout).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BASE=${AWD_SERVICES_DIR:-/var/lib/awd-services}
SSH_PORT=${AWD_SSH_PORT:-2222}
SSH_USER=${AWD_SSH_USER:-awdremote}
S3_PORT=${AWD_S3_PORT:-5055}
TIMEOUT=${AWD_SERVICES_TIMEOUT:-30}
PY=${AWD_PYTHON:-$REPO/.venv/bin/python}
HOST=127.0.0.1

log() { printf '[test-services] %s\n' "$*"; }
die() { printf '[test-services] ERROR: %s\n' "$*" >&2; exit 1; }

# pid from pid file $1 if that process is alive and is named $2
alive() {
    local pid comm
    [[ -r $1 ]] || return 1
    pid=$(tr -dc 0-9 <"$1")
    [[ -n $pid ]] && [[ -d /proc/$pid ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$2"* ]] || return 1
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
    echo "$pid"
}

# exit 0 when the server on port $1 answers: sshd with its banner, moto with an S3 bucket listing
answers() {
    "$PY" - "$1" "$2" <<'EOF'
import socket, sys, urllib.request
port, what = int(sys.argv[1]), sys.argv[2]
try:
    if what == "ssh":
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            sys.exit(0 if s.recv(64).startswith(b"SSH-2.0-") else 1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as r:
        sys.exit(0 if b"ListAllMyBucketsResult" in r.read() else 1)
except OSError:
    sys.exit(1)
EOF
}

wait_for() {  # port, kind, log file
    local deadline=$((SECONDS + TIMEOUT))
    until answers "$1" "$2"; do
        if ((SECONDS >= deadline)); then
            tail -n 20 "$3" >&2 || true
            die "$2 server on $HOST:$1 did not answer within ${TIMEOUT}s (log: $3)"
        fi
        sleep 0.2
    done
}

write_env() {
    local tmp
    tmp=$(mktemp "$BASE/.env.XXXXXX")
    cat >"$tmp" <<EOF
AWD_SSH_HOST=$HOST
AWD_SSH_PORT=$SSH_PORT
AWD_SSH_USER=$SSH_USER
AWD_SSH_HOME=$(getent passwd "$SSH_USER" | cut -d: -f6)
AWD_SSH_KEY=$BASE/client_ed25519
AWD_S3_ENDPOINT=http://$HOST:$S3_PORT
EOF
    chmod 0644 "$tmp"
    mv -f "$tmp" "$BASE/env"   # atomic: a test never reads half of it
}

start_sshd() {
    if alive "$BASE/run/sshd.pid" sshd >/dev/null && answers "$SSH_PORT" ssh; then
        log "sshd already answers on $HOST:$SSH_PORT"
        return
    fi
    if [[ ! -x /usr/sbin/sshd ]]; then
        log "installing openssh-server"
        export DEBIAN_FRONTEND=noninteractive
        local apt=(apt-get install -y -q --no-install-recommends openssh-server)
        "${apt[@]}" >/dev/null || { apt-get update -q >/dev/null && "${apt[@]}" >/dev/null; }
    fi
    id "$SSH_USER" >/dev/null 2>&1 || useradd -m -s /bin/sh "$SSH_USER"
    usermod -p '*' "$SSH_USER"   # no password, but not locked: sshd without PAM refuses a locked ('!') account
    local home
    home=$(getent passwd "$SSH_USER" | cut -d: -f6)
    [[ -f $BASE/ssh_host_ed25519_key ]] || ssh-keygen -q -t ed25519 -N '' -f "$BASE/ssh_host_ed25519_key"
    [[ -f $BASE/client_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C "awd-bench tests" -f "$BASE/client_ed25519"
    if [[ -n ${SUDO_UID:-} ]]; then chown "$SUDO_UID" "$BASE/client_ed25519"; fi
    install -d -m 0700 -o "$SSH_USER" -g "$(id -g "$SSH_USER")" "$home/.ssh"
    install -m 0600 -o "$SSH_USER" -g "$(id -g "$SSH_USER")" "$BASE/client_ed25519.pub" "$home/.ssh/authorized_keys"
    cat >"$BASE/sshd_config" <<EOF
# written by scripts/test-services.sh: key login for $SSH_USER only, loopback only
Port $SSH_PORT
ListenAddress $HOST
HostKey $BASE/ssh_host_ed25519_key
PidFile $BASE/run/sshd.pid
AllowUsers $SSH_USER
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
X11Forwarding no
AllowTcpForwarding no
Subsystem sftp internal-sftp
MaxSessions 30
MaxStartups 30:30:60
EOF
    mkdir -p /run/sshd   # sshd's privilege-separation directory (systemd would make it)
    /usr/sbin/sshd -t -f "$BASE/sshd_config" || die "sshd rejects $BASE/sshd_config"
    /usr/sbin/sshd -f "$BASE/sshd_config" -E "$BASE/log/sshd.log"
    wait_for "$SSH_PORT" ssh "$BASE/log/sshd.log"
    log "sshd answers on $HOST:$SSH_PORT (user $SSH_USER, key $BASE/client_ed25519)"
}

start_moto() {
    if alive "$BASE/run/moto.pid" moto_server >/dev/null && answers "$S3_PORT" s3; then
        log "moto S3 server already answers on $HOST:$S3_PORT"
        return
    fi
    [[ -x ${PY%/python}/moto_server ]] || die "no ${PY%/python}/moto_server: install the test extra first" \
        "(pip install -e '.[test]' -c constraints.txt)"
    # setsid: the server outlives this script and is nobody's child to clean up but ours (by pid file)
    setsid "${PY%/python}/moto_server" -H "$HOST" -p "$S3_PORT" >"$BASE/log/moto.log" 2>&1 </dev/null &
    echo $! >"$BASE/run/moto.pid"
    wait_for "$S3_PORT" s3 "$BASE/log/moto.log"
    log "moto S3 server answers on http://$HOST:$S3_PORT"
}

stop_one() {  # pid file, process name
    local pid
    if pid=$(alive "$1" "$2"); then
        kill "$pid"
        for _ in $(seq 50); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
        [[ -d /proc/$pid ]] && kill -9 "$pid"
        log "stopped $2 (pid $pid)"
    fi
    rm -f "$1"
}

case ${1:-} in
    start)
        ((EUID == 0)) || die "start must run as root (it installs openssh-server, adds a user, starts sshd)"
        install -d -m 0755 "$BASE" "$BASE/run" "$BASE/log"
        start_sshd
        start_moto
        write_env
        cat "$BASE/env"
        ;;
    stop)
        stop_one "$BASE/run/moto.pid" moto_server
        stop_one "$BASE/run/sshd.pid" sshd
        ;;
    status)
        ok=0
        if answers "$SSH_PORT" ssh; then log "sshd: answers on $HOST:$SSH_PORT"; else log "sshd: down"; ok=1; fi
        if answers "$S3_PORT" s3; then log "moto: answers on $HOST:$S3_PORT"; else log "moto: down"; ok=1; fi
        [[ -r $BASE/env ]] && cat "$BASE/env"
        exit $ok
        ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
