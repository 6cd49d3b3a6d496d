# shellcheck shell=bash
# OpenSSH test server for the SFTP backend, sourced by scripts/test.sh.
#
# Installs openssh-server when /usr/sbin/sshd is missing, then starts a private
# sshd on 127.0.0.1 and a free port with its own temporary host key, client key,
# authorized_keys and known_hosts (nothing under ~/.ssh or /etc/ssh is touched),
# waits until it answers and exports how to reach it:
#   LIFEBOAT_TEST_SFTP_HOST, _PORT, _USER, _IDENTITY (client private key),
#   _KNOWN_HOSTS (a known_hosts file with the server's key), _ROOT (a directory
#   the tests may write under), and _PORT_NOLINK / _KNOWN_HOSTS_NOLINK: a
#   second port where the server refuses hard links and fsync.
# Its cleanup is appended to STOP_SERVERS. A server that cannot start ends the
# run with an error: the SFTP tests never skip.

lifeboat_sftp_fail() {
  echo "error: sftp test server: $*" >&2
  exit 1
}

lifeboat_sftp_answers() {
  # True once something on 127.0.0.1:$1 sends an SSH banner.
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 4 <&3" 2>/dev/null | grep -q '^SSH-'
}

lifeboat_start_sshd() {
  local sshd=/usr/sbin/sshd
  # Already started by an earlier `source` in this shell and still answering.
  if [ -n "${LIFEBOAT_TEST_SFTP_PORT:-}" ] && [ -n "${LIFEBOAT_TEST_SFTP_ROOT:-}" ] &&
    lifeboat_sftp_answers "$LIFEBOAT_TEST_SFTP_PORT"; then
    return 0
  fi

  if [ ! -x "$sshd" ] || ! command -v ssh-keygen >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 ||
      lifeboat_sftp_fail "$sshd is missing and apt-get is not available; install OpenSSH's server"
    echo "installing openssh-server for the SFTP tests" >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null 2>&1; then
      apt-get update -qq >/dev/null 2>&1 || true
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null ||
        lifeboat_sftp_fail "apt-get install openssh-server failed"
    fi
    [ -x "$sshd" ] || lifeboat_sftp_fail "$sshd is still missing after installing openssh-server"
  fi
  # Privilege separation directory, required when sshd runs as root.
  if [ "$(id -u)" = 0 ]; then
    mkdir -p /run/sshd && chmod 0755 /run/sshd
  fi

  local dir port port2 user pid
  dir=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-sshd.XXXXXX") || lifeboat_sftp_fail "mktemp failed"
  chmod 0755 "$dir"
  user=$(id -un)
  # Two ports: the second serves an SFTP server without hard links and fsync,
  # so the tests also cover the backend's fallback to stat-then-rename.
  read -r port port2 < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))') && [ -n "$port2" ] ||
    lifeboat_sftp_fail "cannot pick free ports (python3 is needed)"

  ssh-keygen -q -t ed25519 -N '' -C lifeboat-test-host -f "$dir/host_ed25519" ||
    lifeboat_sftp_fail "ssh-keygen failed (host key)"
  ssh-keygen -q -t ed25519 -N '' -C lifeboat-test-client -f "$dir/client_ed25519" ||
    lifeboat_sftp_fail "ssh-keygen failed (client key)"
  cp "$dir/client_ed25519.pub" "$dir/authorized_keys"
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" >"$dir/known_hosts"
  echo "[127.0.0.1]:$port2 $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" >"$dir/known_hosts_nolink"
  mkdir -p "$dir/root"

  cat >"$dir/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
Port $port2
HostKey $dir/host_ed25519
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $user
UsePAM no
StrictModes no
MaxStartups 200
MaxSessions 64
Subsystem sftp internal-sftp
LogLevel INFO
Match LocalPort $port2
  ForceCommand internal-sftp -P hardlink,fsync
EOF
  "$sshd" -t -f "$dir/sshd_config" 2>"$dir/sshd.log" ||
    lifeboat_sftp_fail "sshd rejects its configuration: $(cat "$dir/sshd.log")"

  "$sshd" -D -e -f "$dir/sshd_config" >>"$dir/sshd.log" 2>&1 &
  pid=$!
  STOP_SERVERS+=("kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf '$dir'")

  local waited=0
  until lifeboat_sftp_answers "$port" && lifeboat_sftp_answers "$port2"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      lifeboat_sftp_fail "sshd exited at startup: $(tail -n 20 "$dir/sshd.log")"
    fi
    if [ "$waited" -ge 40 ]; then
      lifeboat_sftp_fail "sshd does not answer on 127.0.0.1:$port after 20 s: $(tail -n 20 "$dir/sshd.log")"
    fi
    sleep 0.5
    waited=$((waited + 1))
  done

  export LIFEBOAT_TEST_SFTP_HOST=127.0.0.1
  export LIFEBOAT_TEST_SFTP_PORT="$port"
  export LIFEBOAT_TEST_SFTP_USER="$user"
  export LIFEBOAT_TEST_SFTP_IDENTITY="$dir/client_ed25519"
  export LIFEBOAT_TEST_SFTP_KNOWN_HOSTS="$dir/known_hosts"
  export LIFEBOAT_TEST_SFTP_ROOT="$dir/root"
  # The same server without hardlink@openssh.com and fsync@openssh.com.
  export LIFEBOAT_TEST_SFTP_PORT_NOLINK="$port2"
  export LIFEBOAT_TEST_SFTP_KNOWN_HOSTS_NOLINK="$dir/known_hosts_nolink"
  echo "sftp test server: sshd on 127.0.0.1:$port (pid $pid, files in $dir)" >&2
}

lifeboat_start_sshd
