"""Start-up: `r1chat --help`, what it imports, and the TUI's first frame without a model.

    python benchmarks/startup.py [--runs 7]

1. `python -m r1chat --help` in a fresh process, several runs, the median wall time (with a bare
   `python -c pass` beside it: the interpreter's own share).
2. `python -X importtime -m r1chat --help`: the costliest imports.
3. Which heavy modules `r1chat --help` loads: none of HEAVY may be imported.
4. The TUI's first frame: a fresh process builds R1ChatApp with an engine factory that never
   finishes loading and runs it headless (App.run_test) until the first screen is mounted.

Exits 1 when `--help` imports a heavy module.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("llama_cpp", "textual", "rich.markdown", "huggingface_hub", "numpy", "jinja2")

MODULES_PROBE = """
import json, sys
sys.argv = ["r1chat", "--help"]
from r1chat.cli import app
try:
    app()
except SystemExit:
    pass
heavy = {HEAVY!r}
print(json.dumps([m for m in heavy if m in sys.modules]), file=sys.stderr)
"""

FIRST_FRAME_PROBE = """
import asyncio, sys, threading, time
t0 = time.perf_counter()
from r1chat.tui.app import R1ChatApp
from r1chat.config import Settings
t_import = time.perf_counter() - t0
release = threading.Event()

def never_loads():
    release.wait()
    raise RuntimeError("benchmark over")

async def main():
    app = R1ChatApp(Settings(model="r1-7b"), engine_factory=never_loads)
    t1 = time.perf_counter()
    async with app.run_test(size=(120, 40)) as pilot:
        t_mounted = time.perf_counter() - t1
        await pilot.pause()
        t_idle = time.perf_counter() - t1
        release.set()
    return t_mounted, t_idle

mounted, idle = asyncio.run(main())
print(f"{t_import} {mounted} {idle}")
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("R1CHAT_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["R1CHAT_HOME"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / "r1chat-startup-bench")
    return env


def wall(args: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(args, capture_output=True, env=_env(), check=True, cwd=ROOT)
        out.append(time.perf_counter() - t0)
    return out


def import_costs(top: int) -> list[tuple[int, int, str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "r1chat", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
        cwd=ROOT,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        self_us, cum_us, name = line[len("import time:") :].split("|")
        # Nesting shows as extra indentation after the one space that follows the bar.
        rows.append((int(cum_us), int(self_us), name[1:].rstrip()))
    # Parents and children both appear; the indentation (as -X importtime prints it) tells which.
    return sorted(rows, reverse=True)[:top]


def heavy_imports() -> list[str]:
    code = MODULES_PROBE.replace("{HEAVY!r}", repr(HEAVY))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
        cwd=ROOT,
    )
    return list(json.loads(proc.stderr.strip().splitlines()[-1]))


def first_frame(runs: int) -> list[tuple[float, float, float, float]] | str:
    if not (ROOT / "r1chat" / "tui" / "app.py").exists():
        return "skipped: r1chat/tui/app.py does not exist yet"
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", FIRST_FRAME_PROBE],
            capture_output=True,
            text=True,
            env=_env(),
            cwd=ROOT,
            check=False,
            timeout=120,
        )
        total = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            return f"failed: {tail}"
        imp, mounted, idle = (float(x) for x in proc.stdout.split()[-3:])
        out.append((imp, mounted, idle, total))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--top", type=int, default=12)
    a = p.parse_args(argv)

    bare = wall([sys.executable, "-c", "pass"], a.runs)
    helps = wall([sys.executable, "-m", "r1chat", "--help"], a.runs)
    print(
        f"python -c pass:        median {statistics.median(bare) * 1000:6.0f} ms"
        f" (min {min(bare) * 1000:.0f})"
    )
    print(
        f"python -m r1chat --help: median {statistics.median(helps) * 1000:6.0f} ms"
        f" (min {min(helps) * 1000:.0f}), {a.runs} runs;"
        f" r1chat's own share {(statistics.median(helps) - statistics.median(bare)) * 1000:.0f}"
        " ms"
    )

    print(f"\ncostliest imports of `r1chat --help` (-X importtime, top {a.top}):")
    print(f"{'cumulative ms':>14} {'self ms':>8}  module")
    for cum, own, name in import_costs(a.top):
        print(f"{cum / 1000:>14.1f} {own / 1000:>8.1f}  {name}")

    heavy = heavy_imports()
    print(
        f"\nheavy modules imported by `r1chat --help`: {', '.join(heavy) or 'none'}"
        f" (checked: {', '.join(HEAVY)})"
    )

    frames = first_frame(max(1, a.runs // 2))
    if isinstance(frames, str):
        print(f"\nTUI first frame: {frames}")
    else:
        med = [statistics.median(col) * 1000 for col in zip(*frames, strict=True)]
        print(
            f"\nTUI first frame without a model ({len(frames)} runs, medians):"
            f" import r1chat.tui.app {med[0]:.0f} ms; app start to first screen mounted"
            f" {med[1]:.0f} ms (idle {med[2]:.0f} ms); whole process {med[3]:.0f} ms"
        )
    return 1 if heavy else 0


if __name__ == "__main__":
    raise SystemExit(main())
