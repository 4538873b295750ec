#!/usr/bin/env bash
# The README's first command: on a fresh Debian/Ubuntu machine, install what is missing and run the stack.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
[ -d node_modules ] && [ node_modules -nt package-lock.json ] || npm ci --no-audit --no-fund
exec npm run --silent stack -- "$@"
