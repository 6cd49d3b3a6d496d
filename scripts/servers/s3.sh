# S3-compatible test server: moto (`moto_server`) on 127.0.0.1.
#
# Sourced by scripts/test.sh (bash, `set -euo pipefail`). Installs moto in a
# cached virtualenv when missing, starts it on a free port, waits until it
# answers, creates the bucket the tests use, exports how to reach it and
# registers its cleanup in STOP_SERVERS. Any failure ends the run: tests must
# never skip for want of a server.
#
# Why moto: of four S3-compatible servers tried, it alone refused a second
# conditional PUT (`If-None-Match: *`) with 412, also under concurrency, which
# the create-only `put` of the conformance suite checks.
#
# Exports: LIFEBOAT_TEST_S3_ENDPOINT, LIFEBOAT_TEST_S3_BUCKET, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_REGION (dummy credentials; moto accepts any).
#
# Can also be sourced by hand to run the S3 tests alone:
#   bash -c 'STOP_SERVERS=(); source scripts/servers/s3.sh; \
#            cargo test -p lifeboat-tests --test conformance_s3; \
#            for c in "${STOP_SERVERS[@]}"; do eval "$c"; done'

lifeboat_s3_fail() {
  echo "error: S3 test server (moto): $*" >&2
  exit 1
}

lifeboat_s3_start() {
  local cache="${XDG_CACHE_HOME:-$HOME/.cache}/lifeboat-test"
  local venv="$cache/moto-venv"
  local python="${LIFEBOAT_PYTHON:-python3}"
  command -v "$python" >/dev/null 2>&1 \
    || lifeboat_s3_fail "python3 not found; install python3 (with the venv module)"

  if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c 'import moto, boto3' >/dev/null 2>&1; then
    echo "installing moto[server] into $venv (once)..." >&2
    mkdir -p "$cache" || lifeboat_s3_fail "cannot create $cache"
    rm -rf "$venv"
    "$python" -m venv "$venv" \
      || lifeboat_s3_fail "cannot create a virtualenv at $venv (on Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]' boto3 \
      || lifeboat_s3_fail "pip install 'moto[server]' failed"
  fi

  local port
  port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')" \
    || lifeboat_s3_fail "cannot find a free port"

  local log="$cache/moto-$port.log"
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
  local pid=$!
  STOP_SERVERS+=("kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f '$log'")

  local endpoint="http://127.0.0.1:$port"
  local deadline=$((SECONDS + 30))
  until curl -s -o /dev/null "$endpoint/" 2>/dev/null \
      || "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('$endpoint/', timeout=1)" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      lifeboat_s3_fail "moto_server exited at start; its log ($log):
$(tail -n 20 "$log")"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      lifeboat_s3_fail "moto_server did not answer on $endpoint within 30 s; its log ($log):
$(tail -n 20 "$log")"
    fi
    sleep 0.2
  done

  export LIFEBOAT_TEST_S3_ENDPOINT="$endpoint"
  export LIFEBOAT_TEST_S3_BUCKET="lifeboat-test"
  export AWS_ACCESS_KEY_ID="lifeboat-test"
  export AWS_SECRET_ACCESS_KEY="lifeboat-test-secret"
  export AWS_REGION="us-east-1"
  export LIFEBOAT_TEST_MOTO_SERVER="$venv/bin/moto_server"
  unset AWS_SESSION_TOKEN AWS_ENDPOINT AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_PROFILE

  "$venv/bin/python" - "$endpoint" "$LIFEBOAT_TEST_S3_BUCKET" <<'PY' \
    || lifeboat_s3_fail "cannot create the test bucket on $endpoint"
import sys
import boto3
endpoint, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
s3.create_bucket(Bucket=bucket)
# The create-only put the backends rely on: a second conditional PUT must fail.
s3.put_object(Bucket=bucket, Key="selftest/once", Body=b"1", IfNoneMatch="*")
try:
    s3.put_object(Bucket=bucket, Key="selftest/once", Body=b"2", IfNoneMatch="*")
except s3.exceptions.ClientError as e:
    if e.response["ResponseMetadata"]["HTTPStatusCode"] != 412:
        raise
else:
    sys.exit("this moto version ignores If-None-Match: * (a second conditional PUT succeeded)")
s3.delete_object(Bucket=bucket, Key="selftest/once")
PY
  echo "S3 test server (moto) on $endpoint, bucket $LIFEBOAT_TEST_S3_BUCKET" >&2
}

lifeboat_s3_start
