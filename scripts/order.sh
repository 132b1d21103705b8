#!/usr/bin/env bash
# Rerun every evaluation of the paper tables, one after another, and write outputs/tables/<table>.md and .json
# (paper and measured numbers side by side, each row's provenance). Each run starts outputs/tables/<table>/ afresh
# (a previous run's folder is replaced, and a line says so). Lists every missing input first; exits non-zero when
# a row's checkpoint or data is missing or a step fails (the rows that read its outputs are marked failed too).
#   bash scripts/order.sh [--demo] [--table NAME] [--set KEY=VALUE] [--config YAML] [--out_root DIR]
# --demo: the demo table (config/paper_tables_demo.yaml) on the synthetic data and the model of scripts/demo.sh,
# which runs first when its model is not there yet (and no --set checkpoint=... is given).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup_env.sh
PYTHON=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
args=()
demo=0
for arg in "$@"; do
    if [[ "$arg" == "--demo" ]]; then
        demo=1
        args+=(--config config/paper_tables_demo.yaml)
    else
        args+=("$arg")
    fi
done
if [[ $demo == 1 && ! -f outputs/demo/pytorch_model.bin.best && " $* " != *" checkpoint="* ]]; then
    echo "[order] no demo model yet: running scripts/demo.sh first"
    bash scripts/demo.sh
fi
if [[ $demo == 1 && ! -f outputs/demo_music/model_best.pth ]]; then
    echo "[order] no music-video demo model yet: training it (config/demo_music.yaml)"
    "$PYTHON" main_retrieval.py --config config/demo_music.yaml
fi
exec "$PYTHON" -m scripts.paper_tables "${args[@]}"
