#!/usr/bin/env bash
# Set up (./.venv) and run the main job end to end on built-in synthetic demo data:
# synthesise 5 classes -> train -> evaluate on the sealed test split -> predict fresh recordings.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/cultural-music demo "$@"
