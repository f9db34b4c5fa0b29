#!/usr/bin/env bash
# A second virtual environment with Keras' other backends, TensorFlow and PyTorch (CPU
# builds), beside JAX, for tests/test_backends.py, which runs appsleuth's CLI in it under
# each backend. The project's .venv stays JAX-only.
#
#   bash .ci/backends-setup.sh [VENV]    # default: .cache/backends-venv
#
# Idempotent: a venv whose stamp matches this script, pyproject.toml and the checkout it
# installs is left as it is. Quiet (pip's output goes to VENV/setup.log, shown when pip
# fails); exits non-zero, saying why, when anything fails.
set -euo pipefail
script=$(realpath "$0")
cd "$(dirname "$script")/.."
repo=$PWD
venv=${1:-${APPSLEUTH_BACKENDS_VENV:-$repo/.cache/backends-venv}}
# torch's CPU build: pip finds it in /opt/wheels (find-links) on this kind of machine.
# The "+cpu" label keeps pip from fetching the multi-GB CUDA build from PyPI; where that
# wheel is absent, the CUDA build is the fallback (slow, but the tests then still run).
packages=("tensorflow-cpu==2.21.0" "torch==2.13.0+cpu")
fallback=("tensorflow-cpu==2.21.0" "torch==2.13.0")

log() { echo "backends-setup: $*" >&2; }
python=$venv/bin/python
stamp=$venv/.appsleuth-backends
digest=$( (cat "$script" pyproject.toml && echo "$repo") | sha256sum | cut -d' ' -f1)
if [ -x "$python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ]; then
    exit 0
fi

start=$(date +%s)
log "installing appsleuth (editable, from $repo), ${packages[*]} into $venv (minutes)"
[ -x "$python" ] || python3 -m venv "$venv"
rm -f "$stamp"
pip_log=$venv/setup.log
# The pip that python3 -m venv brings: a newer one from PyPI may read this machine's
# pip configuration (its torch cap, its wheel folders) differently.
install() { "$python" -m pip install -e "$repo" "$@" >>"$pip_log" 2>&1; }
: >"$pip_log"
if ! install "${packages[@]}"; then
    # pip words a missing wheel differently with and without a constraints file, so any
    # failure gets one more try with the fallback (which also covers a passing network
    # error).
    log "pip could not install ${packages[*]} (the end of $pip_log below); trying"
    log "${fallback[*]} from PyPI instead (torch's CUDA build, several GB; it runs on the CPU)"
    tail -n 8 "$pip_log" >&2
    if ! install "${fallback[@]}"; then
        log "pip failed again; the end of $pip_log:"
        tail -n 30 "$pip_log" >&2
        exit 1
    fi
fi

# Each backend must import and run Keras in a process of its own (the backend is fixed
# at Keras' first import), with all three packages installed together.
for backend in jax tensorflow torch; do
    if ! out=$(KERAS_BACKEND=$backend "$python" -c '
import jax, tensorflow, torch, keras
assert keras.backend.backend() == "'$backend'", keras.backend.backend()
x = keras.ops.convert_to_numpy(keras.layers.Dense(2)(keras.ops.ones((3, 4))))
assert x.shape == (3, 2), x.shape
' 2>&1); then
        log "Keras does not run on $backend in $venv:"
        printf '%s\n' "$out" | tail -n 20 >&2
        exit 1
    fi
done
printf '%s\n' "$digest" >"$stamp"
log "ready in $(($(date +%s) - start)) s"
