#!/usr/bin/env bash
# Install the browser of the `segzero demo` browser tests (tests/demo/test_demo_browser.py): Debian's chromium
# package, with apt-get, when there is no /usr/bin/chromium yet. Playwright (the Python package, dev extra) drives
# it through its executable path; Playwright's own browser download is never used.
#
#   bash tests/demo/install_browser.sh        # idempotent: with a chromium there, it only prints its version
#
# SEGZERO_CHROMIUM=/path/to/chromium points the tests (and this script) at another Chromium instead.
# apt-get runs as root, or through `sudo -n` when that works without a password. When chromium cannot be
# installed this fails if $CI is set (CI must run the browser tests) and only warns otherwise (they skip).
set -euo pipefail

say() { echo "browser install: $*" >&2; }
in_ci() { case "${CI:-}" in "" | 0 | false | False | FALSE | no) return 1 ;; *) return 0 ;; esac; }
give_up() {
    if in_ci; then
        say "ERROR: $* (CI is set: the browser tests of segzero demo must run)"
        exit 1
    fi
    say "WARNING: $*; tests/demo/test_demo_browser.py will skip"
    exit 0
}

found() {  # as tests/demo/browser.py's find_chromium: $SEGZERO_CHROMIUM alone when it is set
    local c
    if [ -n "${SEGZERO_CHROMIUM:-}" ]; then set -- "$SEGZERO_CHROMIUM"; else set -- /usr/bin/chromium /usr/bin/chromium-browser; fi
    for c in "$@"; do
        if [ -f "$c" ] && [ -x "$c" ]; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

if chromium="$(found)"; then
    say "using $chromium ($("$chromium" --version 2>/dev/null || echo 'version unknown'))"
    exit 0
fi
if [ -n "${SEGZERO_CHROMIUM:-}" ]; then
    give_up "SEGZERO_CHROMIUM=$SEGZERO_CHROMIUM is not an executable file"
fi

command -v apt-get >/dev/null 2>&1 || give_up "no chromium and no apt-get to install Debian's chromium package"
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    give_up "no chromium, and installing it with apt-get needs root (run: sudo apt-get install chromium)"
fi

start=$(date +%s)
say "installing Debian's chromium with apt-get"
export DEBIAN_FRONTEND=noninteractive
if ! ${as_root[@]+"${as_root[@]}"} apt-get update -qq >/dev/null \
        || ! ${as_root[@]+"${as_root[@]}"} apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
    give_up "apt-get could not install chromium"
fi
chromium="$(found)" || give_up "apt-get installed chromium but there is no /usr/bin/chromium"
say "installed $chromium ($("$chromium" --version 2>/dev/null || echo 'version unknown')) in $(( $(date +%s) - start )) s"
