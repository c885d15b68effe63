#!/usr/bin/env bash
# The one prepared check for the GPU machine (see ../shared/gpu/README.md): r1chat bench on the
# 7B twin beside llama-bench on the same file, the engine-overhead benchmark on the twin, and
# k samples decoded together (batch_decode, bench --samples).
#
# Here, before the run:  rm -rf .gpu && cp -r ../shared/gpu .gpu      (.gpu/ is git-ignored)
# The run (carry .gpu):  bash benchmarks/gpu_check.sh [TOKENS]        (TOKENS: overhead run, 4000)
# Everything lands under $OUT (the device tool's output folder), summary.txt first.
set -uo pipefail
cd "$(dirname "$0")/.."
TOKENS=${1:-4000}
OUT=${OUT:-/tmp/r1chat-gpu-check}
mkdir -p "$OUT"
M=/dev/shm/twin.gguf
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
log "r1chat bench"
if ! timeout 300 python3 -m r1chat bench --model "$M" --json >"$OUT/bench.json" 2>"$OUT/bench.err"; then
  if grep -q "No such command" "$OUT/bench.err"; then
    timeout 300 python3 -c 'import typer; from r1chat.commands.bench import bench; typer.run(bench)' \
      --model "$M" --json >"$OUT/bench.json" 2>"$OUT/bench.err" || log "bench failed"
  else
    log "bench failed: $(tail -1 "$OUT/bench.err")"
  fi
fi

# 2. llama-bench on the same file: the reference (pp512 and tg128, as the issue quotes), then
#    tg1024 for the same length as r1chat bench's decode.
log "llama-bench"
timeout 300 "$LLAMA_BENCH" -m "$M" -ngl 99 -fa 1 -p 512 -n 128 -r 3 >"$OUT/llama-bench.txt" 2>&1 \
  || log "llama-bench failed"
timeout 300 "$LLAMA_BENCH" -m "$M" -ngl 99 -fa 1 -p 0 -n 1024 -r 2 -o json \
  >"$OUT/llama-bench-tg1024.json" 2>"$OUT/llama-bench-tg1024.err" || log "llama-bench tg1024 failed"

# 3. engine overhead: bare loop, engine, r1chat, stock create_completion, llama-bench per window.
log "engine_overhead --tokens $TOKENS"
timeout 420 python3 benchmarks/engine_overhead.py "$M" --tokens "$TOKENS" \
  --json "$OUT/engine_overhead.json" >"$OUT/engine_overhead.txt" 2>&1 || log "engine_overhead failed"

# 4. k samples decoded together on the twin (issue 13: k = 8 should give ≥ 4x the aggregate of
#    k = 1, since one decode step of the 7B is memory-bound), and r1chat bench --samples 8.
log "batch_decode"
timeout 300 python3 benchmarks/batch_decode.py "$M" --tokens 256 --ks 1,2,4,8 --rounds 2 \
  --json "$OUT/batch_decode.json" >"$OUT/batch_decode.txt" 2>&1 || log "batch_decode failed"
timeout 200 python3 -m r1chat bench --model "$M" --samples 8 --tokens 256 --json \
  >"$OUT/bench_samples8.json" 2>"$OUT/bench_samples8.err" || log "bench --samples failed"

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
EOF
