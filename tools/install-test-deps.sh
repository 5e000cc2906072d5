#!/bin/sh
# Debian packages the test suite needs beyond Python: dciodvfy (dicom3tools) checks the DICOM
# SEG/SR/SC outputs against the standard; chromium renders report.html (screenshots, PDF);
# postgresql's server binaries (initdb, pg_ctl) run the results-database tests' own server.
# Idempotent and quiet: prints one line only when it installs something or fails.
set -eu
missing=""
command -v dciodvfy >/dev/null 2>&1 || missing="$missing dicom3tools"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -n "$(ls /usr/lib/postgresql/*/bin/postgres 2>/dev/null)" ] || missing="$missing postgresql"
[ -n "$missing" ] || exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "install-test-deps: not root and no sudo; install$missing yourself" >&2
        exit 1
    fi
fi
echo "install-test-deps: installing$missing (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
LOG=$(mktemp)
# shellcheck disable=SC2086  # $missing is a list of package names
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $missing; } >"$LOG" 2>&1; then
    tail -n 20 "$LOG" >&2
    rm -f "$LOG"
    echo "install-test-deps: apt-get failed" >&2
    exit 1
fi
rm -f "$LOG"
