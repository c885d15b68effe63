#!/usr/bin/env bash
# The one prepared check for the GPU machine (see ../shared/gpu/README.md): r1chat bench on the
# 7B twin beside llama-bench on the same file, the engine-overhead benchmark on the twin, k samples
# decoded together (batch_decode, bench --samples), and a real eval's throughput (eval math-500
# --limit 20 -k 8 on the twin, whose text is noise: only its tokens per second mean anything).
#
# Here, before the run:
#   rm -rf .gpu && cp -r ../shared/gpu .gpu && bash benchmarks/gpu_check.sh --prepare
#   (.gpu/ is git-ignored; --prepare adds the grader's wheels, which the GPU image lacks)
# The run (carry .gpu):  bash benchmarks/gpu_check.sh [TOKENS]        (TOKENS: overhead run, 4000)
#   STEPS="eval" runs only some of: bench llama-bench overhead batch eval (the default: all).
#   EVAL_TOKENS (512): each eval sample's --max-tokens; 20 problems x 8 samples of it.
# Everything lands under $OUT (the device tool's output folder), summary.txt first.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
  # math-verify and what it needs, to grade answers in `r1chat eval`, at the lock's versions:
  # pure-Python wheels, so the ones for the GPU image's Python 3.12 come from here.
  pkgs=$(grep -E '^(math-verify|latex2sympy2-extended|antlr4-python3-runtime|sympy|mpmath)==' \
    requirements/app.txt | sed 's/ .*//')
  rm -rf .gpu/eval-wheels
  # shellcheck disable=SC2086
  exec "${VENV:-.venv}/bin/python" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 -d .gpu/eval-wheels $pkgs
fi

TOKENS=${1:-4000}
STEPS=" ${STEPS:-bench llama-bench overhead batch eval} "
want() { [[ "$STEPS" == *" $1 "* ]]; }
OUT=${OUT:-/tmp/r1chat-gpu-check}
mkdir -p "$OUT"
M=${TWIN:-/dev/shm/twin.gguf}  # TWIN: another model, for a dry run off the GPU machine
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/summary.txt"; }

log "setup"
# shellcheck disable=SC1091
source .gpu/setup.sh --twin >"$OUT/setup.txt" 2>&1 || { log "setup failed"; cat "$OUT/setup.txt"; exit 1; }
export PYTHONPATH=$PWD:${PYTHONPATH:-}
export HF_HUB_OFFLINE=1 R1CHAT_HOME=/tmp/r1chat-home
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
grep -m1 "model name" /proc/cpuinfo >>"$OUT/nvidia-smi.txt"
[ -f "$M" ] || { log "no twin at $M"; exit 1; }

# 1. r1chat bench (through the CLI; the command alone if cli.py does not register it yet).
if want bench; then
  log "r1chat bench"
  if ! timeout 300 python3 -m r1chat bench --model "$M" --json >"$OUT/bench.json" 2>"$OUT/bench.err"; then
    if grep -q "No such command" "$OUT/bench.err"; then
      timeout 300 python3 -c 'import typer; from r1chat.commands.bench import bench; typer.run(bench)' \
        --model "$M" --json >"$OUT/bench.json" 2>"$OUT/bench.err" || log "bench failed"
    else
      log "bench failed: $(tail -1 "$OUT/bench.err")"
    fi
  fi
fi

# 2. llama-bench on the same file: the reference (pp512 and tg128, as the issue quotes), then
#    tg1024 for the same length as r1chat bench's decode.
if want llama-bench; then
  log "llama-bench"
  timeout 300 "$LLAMA_BENCH" -m "$M" -ngl 99 -fa 1 -p 512 -n 128 -r 3 >"$OUT/llama-bench.txt" 2>&1 \
    || log "llama-bench failed"
  timeout 300 "$LLAMA_BENCH" -m "$M" -ngl 99 -fa 1 -p 0 -n 1024 -r 2 -o json \
    >"$OUT/llama-bench-tg1024.json" 2>"$OUT/llama-bench-tg1024.err" || log "llama-bench tg1024 failed"
fi

# 3. engine overhead: bare loop, engine, r1chat, stock create_completion, llama-bench per window.
if want overhead; then
  log "engine_overhead --tokens $TOKENS"
  timeout 420 python3 benchmarks/engine_overhead.py "$M" --tokens "$TOKENS" \
    --json "$OUT/engine_overhead.json" >"$OUT/engine_overhead.txt" 2>&1 || log "engine_overhead failed"
fi

# 4. k samples decoded together on the twin (issue 13: k = 8 should give ≥ 4x the aggregate of
#    k = 1, since one decode step of the 7B is memory-bound), and r1chat bench --samples 8.
if want batch; then
  log "batch_decode"
  timeout 300 python3 benchmarks/batch_decode.py "$M" --tokens 256 --ks 1,2,4,8 --rounds 2 \
    --json "$OUT/batch_decode.json" >"$OUT/batch_decode.txt" 2>&1 || log "batch_decode failed"
  timeout 200 python3 -m r1chat bench --model "$M" --samples 8 --tokens 256 --json \
    >"$OUT/bench_samples8.json" 2>"$OUT/bench_samples8.err" || log "bench --samples failed"
fi

# 5. A real eval's throughput (issue 21): the whole path of `r1chat eval math-500 --limit 20 -k 8`
#    (the suite read from the hub cache at its pinned commit, 8 samples decoded together, each
#    graded, --out written). This machine reaches no hub, so the cache gets a stand-in of
#    MATH-500's file at the pinned commit: 20 problems of MATH's length. The twin's replies are
#    noise, so the report's accuracy means nothing and its tokens per second everything.
if want eval; then
  log "eval math-500 --limit 20 -k 8 --max-tokens ${EVAL_TOKENS:-512}"
  if [ -d .gpu/eval-wheels ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
      .gpu/eval-wheels/*.whl >"$OUT/eval-wheels.txt" 2>&1 || log "eval wheels did not install"
  else
    log "no .gpu/eval-wheels (run benchmarks/gpu_check.sh --prepare before): grading may fail"
  fi
  python3 - <<'EOF' >"$OUT/eval-stand-in.txt" 2>&1 || log "no stand-in MATH-500: see eval-stand-in.txt"
import json

from r1chat.hub import cache_dir
from r1chat.suites import SUITES

s = SUITES["math-500"]
snap = cache_dir() / f"datasets--{s.repo.replace('/', '--')}" / "snapshots" / s.revision
snap.mkdir(parents=True, exist_ok=True)
rows = [
    {
        "problem": f"Let $f(x) = {i + 2}x^2 - {3 * i + 1}x + {i * i % 7 + 1}$. The graph of"
        f" $y = f(x)$ meets the line $y = {i + 5}$ at two points. What is the sum of the squares"
        " of their $x$-coordinates? Express your answer as a common fraction.",
        "answer": f"\\frac{{{i + 3}}}{{{i + 2}}}",
        "unique_id": f"test/stand-in/{i}.json",
        "subject": "Algebra",
        "level": 3,
    }
    for i in range(20)
]
(snap / s.filename).write_text("".join(json.dumps(r) + "\n" for r in rows))
print(snap / s.filename)
EOF
  timeout 420 python3 -m r1chat eval math-500 --limit 20 -k 8 --model "$M" \
    --max-tokens "${EVAL_TOKENS:-512}" --out "$OUT/eval_math500.jsonl" --json \
    >"$OUT/eval_math500.json" 2>"$OUT/eval_math500.err" \
    || log "eval failed: $(tail -1 "$OUT/eval_math500.err")"
fi

log "done"
python3 - "$OUT" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(name):
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return None
b = load("bench.json")
lb = load("llama-bench-tg1024.json")
if b:
    print(f"r1chat bench: load {b['load_s']:.2f} s, ttft {b['ttft_s'] * 1000:.0f} ms, prefill"
          f" {b['prefill_tok_s']:,.0f} tok/s, decode {b['decode_tok_s']:.1f} tok/s over"
          f" {b['tokens']} tokens, backend {b['backend']}, GPU layers {b['n_gpu_layers']}")
if b and lb:
    tg = float(lb[0]["avg_ts"])
    print(f"llama-bench tg1024 {tg:.1f} tok/s; r1chat bench decode / llama-bench:"
          f" {b['decode_tok_s'] / tg:.3f}")
eo = load("engine_overhead.json")
if eo:
    for upto, row in eo["summary"].items():
        print(f"engine_overhead over {upto} tokens: " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
ev = load("eval_math500.json")
if ev:
    print(f"eval math-500: {ev['problems']} problems x {ev['samples']} samples, {ev['tokens']:,}"
          f" tokens at {ev['tok_s']:,.1f} tok/s aggregate (wall {ev['wall_s']:.1f} s, model"
          f" load included; {ev['cut_at_max_tokens']} samples cut at --max-tokens)")
EOF
