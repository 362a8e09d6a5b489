#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment and installs adagrpo-trl into it.
#
# - The venv sees the system site-packages, so a torch that is already installed is kept as it is.
# - Without torch, a CPU-only machine gets a CPU build of torch (never the multi-GB CUDA build); a machine with an
#   NVIDIA driver gets the default build from PyPI.
# - Idempotent: a stamp file records the hash of setup.cfg, so a second call with nothing changed does nothing.
# - The `deepspeed` extra is in by default so the test command runs tests/test_deepspeed.py: it installs in seconds
#   (a pure-Python wheel, nothing compiled at install); on the CPU, DeepSpeed's first run builds one small op with the
#   C++ compiler (about a minute, cached in ~/.cache/torch_extensions). `EXTRAS=test,quality` leaves it out (those
#   tests then skip).
set -euo pipefail

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
EXTRAS="${EXTRAS:-test,quality,deepspeed}"
stamp="$VENV/.adagrpo-installed"
want="$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1) $EXTRAS"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PYTHON" -m venv --system-site-packages "$VENV"
fi
PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "[setup] keeping the installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null 2>&1; then
    echo "[setup] NVIDIA driver found: installing torch from PyPI"
    "$PY" -m pip install -q "torch>=2.4"
else
    echo "[setup] no torch and no GPU: installing a CPU build of torch"
    # A local CPU wheel (pip's find-links) first; then PyTorch's CPU index. PyPI's Linux torch is the CUDA build.
    "$PY" -m pip install -q "torch==2.13.0+cpu" 2>/dev/null \
        || "$PY" -m pip install -q "torch>=2.4" --index-url https://download.pytorch.org/whl/cpu
fi

echo "[setup] installing adagrpo-trl[$EXTRAS] (editable)"
"$PY" -m pip install -q -e ".[$EXTRAS]" 2>&1 | grep -v "is ignored: it is neither" || true
"$PY" -c "import adagrpo_trl, trl, torch; print(f'[setup] adagrpo_trl {adagrpo_trl.__version__}, trl {trl.__version__}, torch {torch.__version__}')"
echo "$want" > "$stamp"
