#!/usr/bin/env bash
# Set up .venv, generate the synthetic demo data, train a tiny CLIP-architecture WTI model from scratch on CPU,
# evaluate it and print the metrics table. The last line is a JSON object with the test metrics.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup_env.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
.venv/bin/python -m dataloaders.synthetic --root data/demo
exec .venv/bin/python main_retrieval.py --config config/demo.yaml "$@"
