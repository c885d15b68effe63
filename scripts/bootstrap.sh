# Sourced by scripts/chat and scripts/test: make .venv with r1chat and a llama.cpp build for this
# machine. Re-running is quick: each step is skipped when already done.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${R1CHAT_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
# The one pin of llama-cpp-python is pyproject.toml's; the build and the check read it there.
LLAMA_VERSION="$(sed -n 's/.*"llama-cpp-python==\([0-9][0-9.]*\)".*/\1/p' "$ROOT/pyproject.toml")"

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        echo "r1chat needs Python 3.11 or newer (found: $("$PY" --version 2>&1)); set PYTHON=..." >&2
        exit 1
    }
    say "creating $VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

# llama.cpp's build flags for this machine. R1CHAT_CMAKE_ARGS (or CMAKE_ARGS) overrides.
llama_flags() {
    if [ -n "${R1CHAT_CMAKE_ARGS:-}" ]; then echo "$R1CHAT_CMAKE_ARGS"; return; fi
    if [ -n "${CMAKE_ARGS:-}" ]; then echo "$CMAKE_ARGS"; return; fi
    if [ "$(uname -s)" = Darwin ] && [ "$(uname -m)" = arm64 ]; then
        echo "-DGGML_METAL=on"; return
    fi
    # CUDA needs both the toolkit (nvcc) and a GPU: a toolkit alone would spend an hour
    # compiling kernels for a machine that cannot run them.
    if { command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; } \
        && { nvidia-smi -L >/dev/null 2>&1 || [ -e /dev/nvidia0 ]; }; then
        echo "-DGGML_CUDA=on"; return
    fi
    # Portable CPU build: a native one uses AMX where the CPU has it, which crashes on systems
    # whose OS does not enable it (ldtilecfg in ggml_backend_amx_mul_mat).
    echo "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
}

# LLAVA_BUILD=OFF: llama-cpp-python's multimodal library is a large share of the build and
# r1chat never loads it.
FLAGS="$(llama_flags) -DLLAVA_BUILD=OFF"
STAMP="$VENV/.llama-cpp-flags"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$LLAMA_VERSION $FLAGS" ] \
    || ! "$VENV/bin/python" -c 'import llama_cpp' >/dev/null 2>&1; then
    # Wheels are kept per flag set: pip's own cache would hand back a build made with others.
    KEY="$(printf '%s' "$LLAMA_VERSION $FLAGS" | cksum | cut -d' ' -f1)"
    WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/r1chat/wheels/$KEY"
    if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
        say "building llama-cpp-python $LLAMA_VERSION with: $FLAGS (several minutes, once)"
        mkdir -p "$WHEELS"
        CMAKE_ARGS="$FLAGS" "${PIP[@]}" wheel --no-deps --no-binary llama-cpp-python \
            --no-cache-dir -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
    fi
    "${PIP[@]}" install --quiet --force-reinstall --no-deps "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
    echo "$LLAMA_VERSION $FLAGS" > "$STAMP"
fi

# r1chat's dependencies at the exact versions and file hashes of the lock (scripts/lock writes
# it), then r1chat itself, editable. EXTRAS=test takes the test tools' lock instead.
LOCK="$ROOT/requirements/${EXTRAS:-app}.txt"
HASH="$(cat "$ROOT/pyproject.toml" "$LOCK" | cksum | cut -d' ' -f1)"
STAMP="$VENV/.r1chat-installed-${EXTRAS:-app}"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$HASH" ]; then
    say "installing r1chat and its locked dependencies (${LOCK#"$ROOT"/})"
    "${PIP[@]}" install --quiet --require-hashes --no-deps -r "$LOCK"
    "${PIP[@]}" install --quiet --no-deps --no-build-isolation -e "$ROOT"
    echo "$HASH" > "$STAMP"
fi
