#!/usr/bin/env bash
# Rerun every evaluation of the paper tables, one after another, and write outputs/tables/<table>.md and .json
# (paper and measured numbers side by side). Exits non-zero when a row's checkpoint or data is missing.
#   bash scripts/order.sh [--demo] [--table NAME] [--set KEY=VALUE] [--config YAML] [--out_root DIR]
# --demo: the demo table (config/paper_tables_demo.yaml) on the synthetic data and the model of scripts/demo.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
args=()
for arg in "$@"; do
    if [[ "$arg" == "--demo" ]]; then
        args+=(--config config/paper_tables_demo.yaml)
    else
        args+=("$arg")
    fi
done
exec "$PYTHON" scripts/paper_tables.py "${args[@]}"
