#!/usr/bin/env bash
# Every benchmark, one after the other (they must not overlap: each compares against a baseline
# measured in the same run, and the machine's cores are shared).
#   bench/run_all.sh            full repetitions
#   bench/run_all.sh --quick    fewer repetitions (bridge/server benches; scale runs 5×30)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
QUICK="${1:-}"
echo "### bench_drawing";  "$PY" bench/bench_drawing.py
echo "### bench_server";   "$PY" bench/bench_server.py $QUICK 2> >(grep -v "running over TCP" >&2)
echo "### bench_bridge";   "$PY" bench/bench_bridge.py $QUICK 2> >(grep -v "running over TCP" >&2)
echo "### bench_widgets";  "$PY" bench/bench_widgets.py $QUICK 2> >(grep -v "running over TCP" >&2)
if [ "$QUICK" = "--quick" ]; then
  echo "### bench_scale";  "$PY" bench/bench_scale.py --kernels 5 --cells 30 2> >(grep -v "running over TCP" >&2)
else
  echo "### bench_scale";  "$PY" bench/bench_scale.py --kernels 20 --cells 100 2> >(grep -v "running over TCP" >&2)
fi
