#!/usr/bin/env bash
# Runs every test: host unit tests, then the QEMU scenarios (tests/scenarios.toml).
# Installs what it needs first (scripts/setup.sh, idempotent). Ends with one line for the whole
# run: `SUMMARY: N passed, M failed`, counting the host unit tests as one group and each
# scenario as one.
#
#   scripts/test.sh [SCENARIO ...]     (no names: all scenarios)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=env.sh
. "$ROOT/scripts/env.sh" || { echo "SUMMARY: 0 passed, 1 failed"; exit 1; }
cd "$ROOT"

passed=0
failed=0

echo "=== host unit tests ($BULKHEAD_TOOLCHAIN toolchain)"
if host_cargo test -p bulkhead --lib -p bulkhead-config -p guest-common 2>&1; then
    echo "PASS: host unit tests"
    passed=$((passed + 1))
else
    echo "FAIL: host unit tests"
    failed=$((failed + 1))
fi

echo "=== QEMU scenarios"
python3 "$ROOT/tests/run_scenarios.py" "$@"
if [ -f "$ROOT/target/scenario-counts" ]; then
    read -r sp sf < "$ROOT/target/scenario-counts"
    rm -f "$ROOT/target/scenario-counts"
    passed=$((passed + sp))
    failed=$((failed + sf))
else
    echo "FAIL: the scenario runner did not finish"
    failed=$((failed + 1))
fi

echo "SUMMARY: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
