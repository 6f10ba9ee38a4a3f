#!/usr/bin/env bash
# Checks that the OpenAPI document tells the truth: schemathesis generates requests from
# it, sends them to the real service, and fails on any answer the document does not
# describe (a schema-valid request refused, an invalid one accepted, an undocumented
# status or body, a 405 without Allow) and on any 5xx.
#
# Bounded and repeatable: a fixed seed, a fixed number of examples per operation, no
# example database carried between runs, and a time limit on the whole run.
#
# Needs python3 (with pip, or the venv module) and the registries (PyPI). Reuses the
# binary `cargo test` built (target/debug/rentabot), or RENTABOT_BIN.
#
#   tests/schemathesis.sh                 # as CI runs it
#   ST_MAX_EXAMPLES=200 tests/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${RENTABOT_BIN:-target/debug/rentabot}
VENV=${SCHEMATHESIS_VENV:-target/schemathesis-venv}
ST_VERSION=4.32.5
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-30}
SEED=${ST_SEED:-20261130}
TIME_LIMIT=${ST_TIME_LIMIT:-600}

if [ ! -x "$BIN" ]; then
    echo "schemathesis: no binary at $BIN (run cargo test or cargo build first)" >&2
    exit 1
fi

# A venv of our own: Debian's system Python refuses pip installs (PEP 668). Without the
# python3-venv package there is no ensurepip: make the venv bare and let the system pip
# install into it.
if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/st" --version | grep -q "$ST_VERSION"; then
    echo "== installing schemathesis $ST_VERSION into $VENV"
    rm -rf "$VENV"
    if python3 -m venv "$VENV" 2>/dev/null; then
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
    else
        python3 -m venv --without-pip "$VENV"
        python3 -m pip --python "$VENV/bin/python" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
    fi
fi

LOG=$(mktemp)
# With an auth config (tests/schemathesis/auth.yaml), so that 401s are checked too. On
# port 0; its address is read from the line it logs once it listens (no polling).
KEY=schemathesis-admin-key-0123456789
coproc SERVICE {
    exec "$BIN" --config descriptors/example.yaml --auth-config tests/schemathesis/auth.yaml \
        --host 127.0.0.1 --port 0 --log-level warn,rentabot::app=info 2>&1
}
SERVER=$SERVICE_PID
cleanup() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    rm -f "$LOG"
}
trap cleanup EXIT

URL=
while IFS= read -r -t 30 line <&"${SERVICE[0]}"; do
    echo "$line" >>"$LOG"
    case $line in
        *"listening on http://"*)
            URL=${line##*listening on }
            URL=${URL%% *}
            break
            ;;
    esac
done
if [ -z "$URL" ]; then
    echo "schemathesis: the service did not start:" >&2
    cat "$LOG" >&2
    exit 1
fi
# The rest of its output, to the log.
cat <&"${SERVICE[0]}" >>"$LOG" &

echo "== schemathesis $ST_VERSION on $URL (seed $SEED, $MAX_EXAMPLES examples per operation)"
status=0
SCHEMATHESIS_HOOKS=tests/schemathesis/hooks.py timeout "$TIME_LIMIT" \
    "$VENV/bin/st" --config-file tests/schemathesis/schemathesis.toml \
    run "$URL/api/v1/openapi.json" \
    --checks all \
    --header "X-API-Key: $KEY" \
    --exclude-checks positive_data_acceptance \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --generation-database none \
    --workers 1 \
    --no-color \
    || status=$?
if [ "$status" -ne 0 ]; then
    echo "== schemathesis failed (exit $status); the service's log:" >&2
    tail -50 "$LOG" >&2
fi
exit "$status"
