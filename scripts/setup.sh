#!/usr/bin/env bash
# Create ./.venv (if needed) and install cultural-music with everything the demo and tests use.
# Usage: bash scripts/setup.sh [--with-browser]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/pip"
# The CPU build of PyTorch first, pinned: a bare 'torch' would pull a multi-GB CUDA build.
"$VENV/bin/python" -c "import torch" 2>/dev/null || "$PIP" install -q "torch==2.13.0"
# With Ray (the cluster extra: Ray core, ~10 s and ~240 MB) for --backend ray and its tests;
# if Ray cannot be installed, everything else is, and the Ray tests skip with the reason.
if ! "$PIP" install -q -e ".[test,web,onnx,cluster,search,archive]"; then
  echo "warning: Ray could not be installed; --backend ray and its tests will skip"
  "$PIP" install -q -e ".[test,web,onnx,search,archive]"
fi
if [ "${1:-}" = "--with-browser" ]; then
  "$PIP" install -q playwright || echo "warning: playwright could not be installed; the browser test will skip"
  if [ ! -x /usr/bin/chromium ]; then
    if command -v apt-get >/dev/null 2>&1; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "warning: chromium could not be installed; the browser test will skip"
    else
      echo "warning: no apt-get; the browser test will skip"
    fi
  fi
fi
echo "setup done: $VENV"
