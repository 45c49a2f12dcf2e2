#!/bin/sh
# The whole test suite: installs what is missing, builds, runs the C unit
# tests and the integration tests (t/*.t) against build/portico.
# PORTICO_BUILD=dir and PORTICO_CMAKE_ARGS select another build (CI uses
# them for the ASan+UBSan pass).
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh
build=${PORTICO_BUILD:-build}
# shellcheck disable=SC2086
cmake -S . -B "$build" ${PORTICO_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$(nproc)"
prove --exec '' "$build"/unit/test_*
PORTICO_BIN="$build/portico" prove -j"${PORTICO_JOBS:-2}" t/
