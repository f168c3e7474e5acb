#!/usr/bin/env bash
# Install the MCP conformance suite (npm @modelcontextprotocol/conformance, pinned by package-lock.json
# here) and a Node >= 22 to run it into .conformance/ at the repository root, or into
# $SEGZERO_CONFORMANCE_DIR. tests/mcp/test_conformance.py then runs it against `segzero-mcp --http`.
# The MCP Inspector (npm @modelcontextprotocol/inspector, same lock file) comes with it:
# tests/mcp/test_inspector_cli.py runs its CLI mode (`.conformance/bin/mcp-inspector --cli ...`) against
# segzero-mcp over stdio, as a user does. Its one install script (postinstall) does nothing when it is
# installed as a dependency, so --ignore-scripts loses nothing; its CLI mode needs no browser.
#
#   bash tests/mcp/conformance/install.sh        # idempotent: a second run only checks the install
#
# Needs npm (and so some node). The suite needs Node >= 22; where the node on PATH is older, the Node
# 22 binary comes from the npm registry (the node-<os>-<arch> packages, optional dependencies in
# package.json here). Where neither exists (e.g. macOS on arm64 with Node 20), the suite's one use
# of Node 22's fs.globSync is pointed at the npm package `glob` instead, in the installed copy only.
# SEGZERO_CONFORMANCE_NODE_MODE=system|package|patch forces one of these three ways.
#
# Without npm this fails when $CI is set (CI must run the suite) and only warns otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
dest="${SEGZERO_CONFORMANCE_DIR:-$repo/.conformance}"
suite_pkg="@modelcontextprotocol/conformance"
suite_version="$(sed -n 's/.*"@modelcontextprotocol\/conformance": *"\([^"]*\)".*/\1/p' "$here/package.json" | head -n1)"
inspector_pkg="@modelcontextprotocol/inspector"
inspector_version="$(sed -n 's/.*"@modelcontextprotocol\/inspector": *"\([^"]*\)".*/\1/p' "$here/package.json" | head -n1)"
start=$(date +%s)

say() { echo "conformance install: $*" >&2; }
in_ci() { case "${CI:-}" in "" | 0 | false | False | FALSE | no) return 1 ;; *) return 0 ;; esac; }

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    if in_ci; then
        say "ERROR: npm (with node) is required to install the MCP conformance suite in CI; install Node.js/npm"
        exit 1
    fi
    say "WARNING: npm not found: the MCP conformance suite is not installed, tests/mcp/test_conformance.py will skip"
    exit 0
fi

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

case "$(uname -s)" in Linux) os=linux ;; Darwin) os=darwin ;; *) os=other ;; esac
case "$(uname -m)" in x86_64 | amd64) arch=x64 ;; aarch64 | arm64) arch=arm64 ;; *) arch=other ;; esac
node_pkg="node-$os-$arch"

mode="${SEGZERO_CONFORMANCE_NODE_MODE:-}"
if [ -z "$mode" ]; then
    if [ "$(node_major node)" -ge 22 ]; then
        mode=system
    elif grep -q "\"$node_pkg\"" "$here/package.json"; then
        mode=package
    else
        mode=patch
    fi
fi
case "$mode" in system | package | patch) ;; *) say "ERROR: SEGZERO_CONFORMANCE_NODE_MODE=$mode (system, package or patch)"; exit 2 ;; esac

lock_sum="$(cat "$here/package.json" "$here/package-lock.json" "$here/install.sh" | cksum | cut -d' ' -f1)"
stamp="suite=$suite_version inspector=$inspector_version lock=$lock_sum mode=$mode os=$os-$arch"
if [ -f "$dest/.installed" ] && [ "$(cat "$dest/.installed")" = "$stamp" ] \
        && [ "$("$dest/bin/conformance" --version 2>/dev/null)" = "$suite_version" ] \
        && [ "$("$dest/bin/mcp-inspector" --version 2>/dev/null)" = "$inspector_version" ]; then
    say "$suite_pkg $suite_version and $inspector_pkg $inspector_version already installed in $dest (node $("$dest/bin/node" --version), $mode)"
    exit 0
fi

say "installing $suite_pkg $suite_version and $inspector_pkg $inspector_version into $dest (node: $mode)"
mkdir -p "$dest"
rm -f "$dest/.installed"
cp "$here/package.json" "$here/package-lock.json" "$dest/"
npm_flags=(--no-audit --no-fund --ignore-scripts --loglevel=error)
if [ "$mode" = package ]; then
    (cd "$dest" && npm ci "${npm_flags[@]}")
else
    (cd "$dest" && npm ci "${npm_flags[@]}" --omit=optional)
fi

mkdir -p "$dest/bin"
rm -f "$dest/bin/node"
case "$mode" in
    system)
        ln -s "$(command -v node)" "$dest/bin/node"
        ;;
    package)
        if [ ! -x "$dest/node_modules/$node_pkg/bin/node" ] || [ "$(node_major "$dest/node_modules/$node_pkg/bin/node")" -lt 22 ]; then
            say "ERROR: npm did not install a working $node_pkg (Node 22); rerun with SEGZERO_CONFORMANCE_NODE_MODE=patch"
            exit 1
        fi
        ln -s "../node_modules/$node_pkg/bin/node" "$dest/bin/node"
        ;;
    patch)
        # Node < 22 has no fs.globSync; the suite uses it only in `tier-check`, but an ES module import
        # of a missing export fails at load time. Import it from the `glob` package instead.
        (cd "$dest" && npm install "${npm_flags[@]}" --no-save "glob@^11")
        index="$dest/node_modules/$suite_pkg/dist/index.js"
        sed -E -i.orig 's/import\{([^}]*)globSync as ([A-Za-z_$][A-Za-z0-9_$]*),?([^}]*)\}from"fs";/import{\1\3}from"fs";import{globSync as \2}from"glob";/' "$index"
        if ! grep -q 'from"glob";' "$index"; then
            say "ERROR: could not redirect the suite's fs.globSync import to the glob package in $index"
            exit 1
        fi
        ln -s "$(command -v node)" "$dest/bin/node"
        ;;
esac

cat >"$dest/bin/conformance" <<'EOF'
#!/bin/sh
# Written by tests/mcp/conformance/install.sh: the MCP conformance suite's CLI on the Node it installed.
bin="$(cd "$(dirname "$0")" && pwd)"
PATH="$bin:$PATH"
export PATH
exec "$bin/node" "$bin/../node_modules/@modelcontextprotocol/conformance/dist/index.js" "$@"
EOF
chmod +x "$dest/bin/conformance"

cat >"$dest/bin/mcp-inspector" <<'EOF'
#!/bin/sh
# Written by tests/mcp/conformance/install.sh: the MCP Inspector's launcher (`mcp-inspector --cli ...`)
# on the Node it installed.
bin="$(cd "$(dirname "$0")" && pwd)"
PATH="$bin:$PATH"
export PATH
exec "$bin/node" "$bin/../node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js" "$@"
EOF
chmod +x "$dest/bin/mcp-inspector"

got="$("$dest/bin/conformance" --version)"
if [ "$got" != "$suite_version" ]; then
    say "ERROR: $dest/bin/conformance --version printed '$got', expected $suite_version"
    exit 1
fi
got="$("$dest/bin/mcp-inspector" --version)"
if [ "$got" != "$inspector_version" ]; then
    say "ERROR: $dest/bin/mcp-inspector --version printed '$got', expected $inspector_version"
    exit 1
fi
# The Inspector declares Node >= 22.19 (it ran on Node 20 too when tried, but that is not promised).
if ! "$dest/bin/node" -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 22 || (a === 22 && b >= 19) ? 0 : 1)'; then
    say "WARNING: $inspector_pkg wants Node >= 22.19; with node $("$dest/bin/node" --version) its CLI may fail"
fi
echo "$stamp" >"$dest/.installed"
say "installed $suite_pkg $suite_version and $inspector_pkg $inspector_version (node $("$dest/bin/node" --version), $mode) in $(( $(date +%s) - start )) s"
