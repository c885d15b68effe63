# Sourced by scripts/chat and scripts/test: make .venv with r1chat and a llama.cpp build for this
# machine. Re-running is quick: each step is skipped when already done.
#
# Set-up writes nothing to stdout (`./scripts/chat ask --json … | jq` gets the answer alone): each
# step is one line on stderr with its time, its own output goes to a log file whose path is
# printed when a step fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${R1CHAT_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
# The one pin of llama-cpp-python is pyproject.toml's; the build and the check read it there.
LLAMA_VERSION="$(sed -n 's/.*"llama-cpp-python==\([0-9][0-9.]*\)".*/\1/p' "$ROOT/pyproject.toml")"

LOG="${R1CHAT_SETUP_LOG:-${XDG_CACHE_HOME:-$HOME/.cache}/r1chat/setup.log}"
mkdir -p "$(dirname "$LOG")"

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }

elapsed() { printf '%dm %02ds' $(($1 / 60)) $(($1 % 60)); }

# step "what is happening" command...: the command's output to the log; on a terminal a line that
# keeps the time, elsewhere one line when it starts and one when it ends.
step() {
    local what="$1"; shift
    local start=$SECONDS
    printf '\n==> %s (%s)\n' "$what" "$(date '+%F %T')" >> "$LOG"
    if [ -t 2 ]; then
        "$@" >> "$LOG" 2>&1 &
        local pid=$!
        # A background job ignores Ctrl+C: stop it with the script.
        trap 'kill "$pid" 2>/dev/null; printf "\n" >&2; exit 130' INT TERM
        while kill -0 "$pid" 2>/dev/null; do
            printf '\r\033[1m==>\033[0m %s … %s ' "$what" "$(elapsed $((SECONDS - start)))" >&2
            sleep 1
        done
        local rc=0
        wait "$pid" || rc=$?
        trap - INT TERM
        printf '\r\033[K' >&2
    else
        say "$what …"
        local rc=0
        "$@" >> "$LOG" 2>&1 || rc=$?
    fi
    if [ "$rc" -ne 0 ]; then
        say "$what failed after $(elapsed $((SECONDS - start))); its output, last lines:"
        tail -n 25 "$LOG" >&2
        say "the whole log: $LOG"
        exit "$rc"
    fi
    say "$what: done in $(elapsed $((SECONDS - start)))"
}

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        echo "r1chat needs Python 3.11 or newer (found: $("$PY" --version 2>&1)); set PYTHON=..." >&2
        exit 1
    }
    step "creating $VENV" "$PY" -m venv "$VENV"
    step "updating pip" "$VENV/bin/python" -m pip install --quiet --upgrade pip
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
        say "llama.cpp is built for this machine once (several minutes): $FLAGS"
        mkdir -p "$WHEELS"
        step "building llama-cpp-python $LLAMA_VERSION" env CMAKE_ARGS="$FLAGS" \
            "${PIP[@]}" wheel --no-deps --no-binary llama-cpp-python \
            --no-cache-dir -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
    fi
    step "installing llama-cpp-python $LLAMA_VERSION" "${PIP[@]}" install --quiet \
        --force-reinstall --no-deps "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
    echo "$LLAMA_VERSION $FLAGS" > "$STAMP"
fi

# r1chat's dependencies at the exact versions and file hashes of the lock (scripts/lock writes
# it), then r1chat itself, editable. EXTRAS=test takes the test tools' lock instead.
LOCK="$ROOT/requirements/${EXTRAS:-app}.txt"
HASH="$(cat "$ROOT/pyproject.toml" "$LOCK" | cksum | cut -d' ' -f1)"
STAMP="$VENV/.r1chat-installed-${EXTRAS:-app}"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$HASH" ]; then
    step "installing r1chat's locked dependencies (${LOCK#"$ROOT"/})" \
        "${PIP[@]}" install --quiet --require-hashes --no-deps -r "$LOCK"
    step "installing r1chat" "${PIP[@]}" install --quiet --no-deps --no-build-isolation -e "$ROOT"
    echo "$HASH" > "$STAMP"
fi
