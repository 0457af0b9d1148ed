#!/usr/bin/env bash
# `make bench`: the full sipmesh-vs-Kamailio benchmark (issue 8). Installs
# SIPp, Kamailio and tcpdump from Debian when missing, then runs TestBench with
# SIPMESH_BENCH=full; results go to results/bench (bench.json, bench.txt,
# bench.png). Extra arguments go to `go test`. See doc.go for the knobs
# (SIPMESH_BENCH_STEP, SIPMESH_BENCH_MESH, SIPMESH_BENCH_MEMORY, SIPMESH_BENCH_OUT).
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v sipp     >/dev/null 2>&1 || need+=(sip-tester)
command -v kamailio >/dev/null 2>&1 || need+=(kamailio)
command -v tcpdump  >/dev/null 2>&1 || need+=(tcpdump)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
  # The benchmark starts its own Kamailio in the foreground, never the service.
  if command -v systemctl >/dev/null 2>&1; then $sudo systemctl stop kamailio >/dev/null 2>&1 || true; fi
fi

SIPMESH_BENCH=full exec "${GO:-go}" test -count=1 -v -timeout 60m -run '^TestBench$' "$@" ./scripts/bench/
