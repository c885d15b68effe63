"""What the one-limit grader costs on the common case: answers.py before issue 21 (math-verify in
the calling thread, bounded by a trace function) against now (a comparison sent to a worker
process, killed at the limit), and now when no worker can start (this process, traced).

Each row is a common task on answers never seen before (every cache misses), so that parsing and
comparing run each time:

  compare   one comparison of two forms of a number (`\\frac{k}{d}` against its decimal)
  grade     one graded answer against a gold (`eval`)
  vote      a vote over 8 samples (5 forms of one answer, 3 others): 8-20 comparisons
  repeat    the same comparison again (the caches answer)
  extract   the answer of a boxed reply (before: `reasoning.extract_boxed`)

The three variants run in turns of one task each, so a noisy, shared machine slows all of them
alike. A cold start (a fresh interpreter: import, first comparison) is timed in subprocesses.
`--slow` adds the issue's pathological answer (`\\sin(7^{e^{e^{e^{10e}}}})+1` against `1`).

    python benchmarks/grading_deadline.py [--rounds 60] [--slow] [--json]

"Before" is answers.py at commit 4a53784, read from git.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from r1chat import answers  # noqa: E402
from r1chat.reasoning import extract_boxed  # noqa: E402

BEFORE_COMMIT = "4a53784635f59ac5dfee54a37c54685d585276b2"
BEFORE_FILE: list[str] = []  # where load_before() wrote it
TOWER = "\\sin\\left(7^{e^{e^{e^{10e}}}}\\right)+1"


def load_before() -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{BEFORE_COMMIT}:r1chat/answers.py"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "answers_before.py"
    path.write_text(source, encoding="utf-8")
    BEFORE_FILE.append(str(path))
    spec = importlib.util.spec_from_file_location("answers_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Numbers:
    """Fresh numbers for each variant and task, of the same size for all (variant `i` of 3 takes
    every third): nothing is ever compared twice, and no variant is served another's caches."""

    def __init__(self, i: int) -> None:
        self.n = i

    def next(self) -> tuple[int, int]:
        self.n += 3
        return self.n, 2 ** (3 + (self.n // 3) % 5)


def tasks(
    equivalent: Callable[[str, str], bool],
    grade: Callable[[str | None, str], bool],
    vote: Callable[[list[str | None]], Any],
    read: Callable[[str], str | None],
    numbers: Numbers,
) -> dict[str, Callable[[], Any]]:
    def compare() -> None:
        k, d = numbers.next()
        assert equivalent(f"\\frac{{{k}}}{{{d}}}", repr(k / d))

    def graded() -> None:
        k, d = numbers.next()
        assert grade(repr(k / d), f"\\dfrac{{{k}}}{{{d}}}")

    def voted() -> None:
        (k, d), (k2, _), (k3, _) = numbers.next(), numbers.next(), numbers.next()
        forms: list[str | None] = [f"\\frac{{{k}}}{{{d}}}", repr(k / d), f"{k}/{d}"]
        forms.append(f"\\dfrac{{{k}}}{{{d}}}")
        forms += [f"x = {k / d!r}", f"\\frac{{{k2}}}{{{d}}}", f"{k3}/{d}", None]
        assert vote(forms).count == 5

    def repeat() -> None:
        assert equivalent("\\frac{3}{8}", "0.375")

    def extract() -> None:
        assert read("So the sum is $\\boxed{\\frac{3}{8}}$, as claimed.") == "\\frac{3}{8}"

    return {
        "compare": compare,
        "grade": graded,
        "vote": voted,
        "repeat": repeat,
        "extract": extract,
    }


def cold_start(variant: str) -> float:
    """Seconds from a fresh interpreter to the end of its first comparison (the import of this
    module not counted: the app has it anyway)."""
    path = [f"import sys; sys.path.insert(0, {str(ROOT)!r})"]
    if variant == "before":
        setup = [
            "import importlib.util",
            f"spec = importlib.util.spec_from_file_location('b', {BEFORE_FILE[0]!r})",
            "m = importlib.util.module_from_spec(spec); sys.modules['b'] = m",
            "spec.loader.exec_module(m)",
        ]
    else:
        setup = ["import r1chat.answers as m"]
        if variant == "in process":
            setup.append("m._fallback_reason = 'benchmark'")
    code = (
        "import time\n" + "\n".join(path + setup) + "\nt = time.perf_counter()\n"
        "assert m.equivalent('\\\\frac{5}{8}', '0.625')\n"
        "print(time.perf_counter() - t)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--cold", type=int, default=3, help="cold starts per variant")
    parser.add_argument("--slow", action="store_true", help="the pathological answer too")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    before = load_before()
    variants = {
        "before": tasks(before.equivalent, before.grade, before.vote, extract_boxed, Numbers(0)),
        "now": tasks(answers.equivalent, answers.grade, answers.vote, answers.extract, Numbers(1)),
        "in process": tasks(
            answers.equivalent, answers.grade, answers.vote, answers.extract, Numbers(2)
        ),
    }
    # Warm: imports, the grammar, a worker started.
    before.equivalent("\\frac{1}{2}", "0.5")
    answers.equivalent("\\frac{1}{2}", "0.5")
    answers._math_verify()

    times: dict[str, dict[str, list[float]]] = {v: {t: [] for t in variants[v]} for v in variants}
    for _ in range(args.rounds):
        for task in variants["now"]:
            for name, v in variants.items():
                in_process = name == "in process"
                saved = answers._shared
                if in_process:
                    answers._shared, answers._fallback_reason = None, "benchmark"
                t0 = time.perf_counter()
                v[task]()
                times[name][task].append(time.perf_counter() - t0)
                if in_process:
                    answers._shared, answers._fallback_reason = saved, None

    cold = {v: [cold_start(v) for _ in range(args.cold)] for v in variants}
    slow: dict[str, float] = {}
    if args.slow:
        for name, equivalent in (("before", before.equivalent), ("now", answers.equivalent)):
            t0 = time.perf_counter()
            equivalent(TOWER, "1")
            slow[name] = time.perf_counter() - t0

    report: dict[str, Any] = {
        "rounds": args.rounds,
        "median_ms": {
            v: {t: statistics.median(x) * 1000 for t, x in by.items()} for v, by in times.items()
        },
        "mean_ms": {
            v: {t: statistics.fmean(x) * 1000 for t, x in by.items()} for v, by in times.items()
        },
        "cold_start_s": {v: statistics.median(x) for v, x in cold.items()},
        "grading_mode": answers.grading_mode(),
    }
    if slow:
        report["pathological_s"] = slow
    if args.json:
        print(json.dumps(report, indent=2))
        return
    med, mean = report["median_ms"], report["mean_ms"]
    print(f"{args.rounds} rounds; now: {report['grading_mode']}")
    print(f"{'median (mean) ms':<18}{'before':>18}{'now':>18}{'in process':>18}{'now/before':>12}")
    for task in variants["now"]:
        cells = [f"{med[v][task]:.3f} ({mean[v][task]:.3f})" for v in variants]
        ratio = med["now"][task] / med["before"][task]
        print(f"{task:<18}" + "".join(f"{c:>18}" for c in cells) + f"{ratio:>11.2f}x")
    c = report["cold_start_s"]
    cells = [f"{c[v]:.2f} s" for v in variants]
    ratio = c["now"] / c["before"]
    print(f"{'cold start':<18}" + "".join(f"{x:>18}" for x in cells) + f"{ratio:>11.2f}x")
    if slow:
        print(
            f"{'pathological':<18}{slow['before']:>16.2f} s{slow['now']:>16.2f} s{'':>18}"
            f"{slow['now'] / slow['before']:>11.2f}x"
        )


if __name__ == "__main__":
    main()
