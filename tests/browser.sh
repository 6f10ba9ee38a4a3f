#!/usr/bin/env bash
# The live dashboard in a real browser: Playwright for Python drives Debian's chromium
# against the real service (tests/browser/: each test starts its own rentabot on port 0
# with an auth config, changes the lab through the API and checks what the open page
# shows, within 1 s for live updates; and the page's operator buttons, with and without
# a key; and the page without JavaScript).
#
# No browser is downloaded: `playwright install` is never run; the browser is
# /usr/bin/chromium (Debian package `chromium`), or $CHROMIUM. The Python packages are
# pinned (tests/browser/requirements.txt) and installed into a venv of our own.
# Bounded: every test has a timeout (tests/browser/pytest.ini), the run has BROWSER_TIME_LIMIT.
#
# Needs python3 (with pip, or the venv module) and PyPI. Reuses the binary `cargo test`
# built (target/debug/rentabot), or RENTABOT_BIN. Extra arguments go to pytest:
#
#   tests/browser.sh                      # as CI runs it
#   tests/browser.sh -k queue -x          # some tests
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${RENTABOT_BIN:-target/debug/rentabot}
VENV=${BROWSER_VENV:-target/browser-venv}
REQUIREMENTS=tests/browser/requirements.txt
TIME_LIMIT=${BROWSER_TIME_LIMIT:-600}
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$BIN" ]; then
    echo "browser tests: no binary at $BIN (run cargo test or cargo build first)" >&2
    exit 1
fi
if [ ! -x "$CHROMIUM" ]; then
    echo "browser tests: no browser at $CHROMIUM (apt-get install chromium)" >&2
    exit 1
fi

# A venv of our own (Debian's system Python refuses pip installs, PEP 668), rebuilt when
# the pinned requirements change. Without the python3-venv package there is no
# ensurepip: make the venv bare and let the system pip install into it.
STAMP=$VENV/requirements.txt
if [ ! -x "$VENV/bin/pytest" ] || ! cmp -s "$REQUIREMENTS" "$STAMP"; then
    echo "== installing $(grep -v '^#' "$REQUIREMENTS" | tr '\n' ' ')into $VENV"
    rm -rf "$VENV"
    export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
    if python3 -m venv "$VENV" 2>/dev/null; then
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    else
        python3 -m venv --without-pip "$VENV"
        python3 -m pip --python "$VENV/bin/python" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    fi
    cp "$REQUIREMENTS" "$STAMP"
fi

echo "== browser tests: $("$CHROMIUM" --version 2>/dev/null) against $BIN"
RENTABOT_BIN=$(realpath "$BIN") PYTHONDONTWRITEBYTECODE=1 timeout "$TIME_LIMIT" \
    "$VENV/bin/pytest" -c tests/browser/pytest.ini tests/browser "$@"
