#!/usr/bin/env bash
# The prediction load benchmark in one command (see bench/README.md):
#   bench/run.sh            full run: 2 rounds, 10 s per point (about 15 minutes)
#   bench/run.sh --quick    one round, 3 s per point (about 4.5 minutes), for iteration
# Other flags go to bench/predict_load.py (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s install  # creates or reuses .venv
exec .venv/bin/python bench/predict_load.py "$@"
