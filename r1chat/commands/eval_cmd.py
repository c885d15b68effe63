"""`r1chat eval FILE.jsonl`: grade the model on a benchmark file (see r1chat.evaluate); `r1chat
eval math-500` and `aime-2024`: on the model card's own benchmarks (see r1chat.suites)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from r1chat.commands.ask_many import KeepOpt, StopEarly, StopEarlyOpt, early_rule
from r1chat.commands.errors import user_errors
from r1chat.commands.options import (
    ApiBaseOpt,
    CtxOpt,
    GpuOpt,
    MaxTokOpt,
    ModelOpt,
    SamplesOpt,
    SeedOpt,
    TempOpt,
    ThinkBudgetOpt,
    ThinkMinOpt,
    TopPOpt,
)
from r1chat.confidence import KEEP

if TYPE_CHECKING:
    from r1chat.config import Settings
    from r1chat.evaluate import Result
    from r1chat.many import SampleProgress
    from r1chat.suites import Suite


def eval_cmd(
    file: Annotated[
        str,
        typer.Argument(
            help='JSONL: one {"problem", "answer"} per line; or math-500 or aime-2024, the model'
            " card's benchmarks, fetched from Hugging Face (./math-500 for a file of that name)",
            metavar="FILE|SUITE",
        ),
    ],
    samples: SamplesOpt = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="The first N problems only")
    ] = None,
    preset: Annotated[
        str, typer.Option("--preset", "-p", help="math, code, logic or none")
    ] = "math",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Results, one line per problem; a rerun goes on"),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
    stats: Annotated[
        bool, typer.Option("--stats", help="Print each problem's figures to stderr")
    ] = False,
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
    max_tokens: MaxTokOpt = None,
    temperature: TempOpt = None,
    top_p: TopPOpt = None,
    ctx: CtxOpt = None,
    gpu_layers: GpuOpt = None,
    seed: SeedOpt = None,
    think_budget: ThinkBudgetOpt = None,
    think_min: ThinkMinOpt = None,
    stop_early: StopEarlyOpt = StopEarly.off,
    conf_keep: KeepOpt = KEEP,
) -> None:
    """Grade the model on problems with known answers: pass@1, maj@k, conf@k, thinking tokens,
    speed; on math-500 and aime-2024, beside the model card's figure."""
    from r1chat.commands.spinner import load_with_spinner
    from r1chat.config import load_settings
    from r1chat.errors import R1ChatError
    from r1chat.evaluate import (
        ResultsFile,
        eval_settings,
        load_problems,
        needs_solving,
        run,
        summary,
    )
    from r1chat.interrupts import handled
    from r1chat.prompts import PRESETS
    from r1chat.suites import SUITES, grader, load_suite, suite_file

    with user_errors():
        if preset not in (*PRESETS, "none"):
            raise R1ChatError(f"unknown preset {preset!r} (math, code, logic or none)", 2)
        settings = load_settings().with_flags(
            model=model,
            api_base=api_base,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            ctx=ctx,
            gpu_layers=gpu_layers,
            seed=seed,
            think_budget=think_budget,
            think_min=think_min,
            samples=samples,
        )
        settings.check_reasoning()
        k = settings.samples
        chosen = None if preset == "none" else preset
        suite = SUITES.get(file)
        if suite is not None:
            # Before the model loads: a suite that cannot be had ends the run at once.
            every = load_suite(suite, suite_file(suite))
            problems = every[:limit] if limit is not None else every
            of = len(every)
        else:
            problems = load_problems(Path(file), limit)
            of = len(problems)
        # Before the model loads: results made with other settings end the run at once.
        early = early_rule(stop_early)
        recorded = eval_settings(settings, chosen, early, conf_keep)
        sink = ResultsFile(out, recorded) if out is not None else None
        done = sink.done if sink is not None else {}
        todo = sum(needs_solving(p, done) for p in problems)
        if sink is not None and todo:
            sink.open()
        results: list[Result] = []
        t0 = time.perf_counter()
        with handled() as stop:
            engine = load_with_spinner(settings, quiet=json_out, stop=stop)

            bar = _Bar(len(problems), len(problems) - todo, quiet=json_out)

            def keep(r: Result) -> None:
                if sink is not None:
                    sink.write(r)  # flushed: a stop keeps every problem finished
                if stats:
                    sys.stderr.write(_stats_line(r) + "\n")
                bar.advance(r)  # solved now: those reused from --out count from the start

            with stop.deferred() as cancel:
                try:
                    for r in run(
                        engine,
                        problems,
                        settings,
                        chosen,
                        done=done,
                        cancel=cancel,
                        on_result=keep,
                        grader=grader(suite),
                        on_progress=bar.sample,
                        early=early,
                        keep=conf_keep,
                    ):
                        results.append(r)
                finally:
                    bar.close()
                    if sink is not None:
                        sink.close()
            report = summary(results, k, time.perf_counter() - t0)
            report["conf_keep"] = conf_keep
            if len(results) < len(problems):
                report["stopped"] = True
            if suite is not None:
                report.update(_card(suite, of, report, settings, preset))
            _print(report, k, json_out)
            code = stop.exit_code
    raise typer.Exit(code)


class _Bar:
    """Progress on stderr on a terminal (none when quiet or piped): problems done, the decode
    speed and the time left.

    The speed counts every sample's tokens as they come (`sample`), not only at each problem's
    end: a problem of 8 samples of 32k tokens takes minutes. The time left is the mean time of
    the problems solved in this run times those still to do, less the current one's time so
    far; Rich's own estimate keeps only the last 30 s of progress, which holds no finished
    problem in a long run.
    """

    _EVERY_S = 0.25  # how often the figures are worked out again; samples report every token

    def __init__(self, total: int, done: int, *, quiet: bool) -> None:
        self._progress: Any = None
        self._todo = total - done
        self._solved = 0
        self._tokens = 0  # of the problems solved in this run
        self._live: dict[int, int] = {}  # the current problem's tokens so far, by sample
        self._t0 = self._current = self._shown = time.perf_counter()
        if quiet or not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._progress = Progress(
            "eval",
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]}"),
            TextColumn("{task.fields[left]}"),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task("eval", total=total, completed=done, speed="", left="")
        self._progress.start()

    def sample(self, p: SampleProgress) -> None:
        """A sample's new text: its tokens so far (fewer when it started again)."""
        self._live[p.index] = p.thinking_tokens + p.answer_tokens
        if self._progress is not None and time.perf_counter() - self._shown >= self._EVERY_S:
            self._show()

    def advance(self, result: Result) -> None:
        """A problem solved in this run (not one reused from --out)."""
        self._solved += 1
        self._tokens += result.tokens
        self._live.clear()
        self._current = time.perf_counter()
        if self._progress is not None:
            self._progress.advance(self._task)
            self._show()

    def _show(self) -> None:
        now = self._shown = time.perf_counter()
        elapsed = now - self._t0
        tokens = self._tokens + sum(self._live.values())
        speed = f"{tokens / elapsed:,.0f} tok/s" if tokens and elapsed > 0 else ""
        left = ""
        if self._solved:
            per = (self._current - self._t0) / self._solved
            rest = max(0.0, per * (self._todo - self._solved) - (now - self._current))
            left = f"{_clock(rest)} left"
        self._progress.update(self._task, speed=speed, left=left)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _clock(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _stats_line(r: Any) -> str:
    from r1chat.sanitize import sanitize

    if r.skipped is not None:
        return f"problem {sanitize(r.id)}: skipped, counted as wrong: {sanitize(r.skipped)}"
    right = sum(r.correct)
    conf = ""
    if r.conf_weighted:
        conf = (
            f" · by confidence {sanitize(str(r.conf_vote))}"
            f" ({'right' if r.conf_vote_correct else 'wrong'})"
        )
    early = ""
    if r.stopped_early:
        early = f" · {r.stopped_early} stopped early, about {r.tokens_saved_estimate:,} tok saved"
    return (
        f"problem {sanitize(r.id)}: {right} of {len(r.correct)} right"
        f" · vote {sanitize(str(r.vote))}"
        f" ({'right' if r.vote_correct else 'wrong'}){conf}"
        f" · thinking {sum(r.thinking_tokens):,} tok"
        f" · {r.tokens:,} tok in {r.seconds:.1f} s{early} · " + ", ".join(sorted(set(r.finish)))
    )


def _card(
    suite: Suite, of: int, report: dict[str, Any], settings: Settings, preset: str
) -> dict[str, Any]:
    """The card's figure beside the run's: where it falls against the run's interval, and the
    settings of this run that are not the card's (each can cost accuracy on its own)."""
    from r1chat.suites import CARD_MODEL, CARD_SETTINGS

    low, high = report["pass@1_ci95"]
    card = suite.card_pass1
    ours = {
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "max_tokens": settings.max_tokens,
        "samples": settings.samples,
    }
    unlike: dict[str, list[Any]] = {
        k: [v, CARD_SETTINGS[k]] for k, v in ours.items() if v != CARD_SETTINGS[k]
    }
    if preset != "math":
        unlike["preset"] = [preset, "math"]
    return {
        "suite": suite.name,
        "suite_problems": of,
        "card_model": CARD_MODEL,
        "card_pass@1": card,
        # The run against the card: "below" when its whole interval is under the card's figure.
        "vs_card": "below" if high < card else "above" if low > card else "level",
        "unlike_card": unlike,
    }


# How _card's settings read in the report: the flag, and the value as the user would give it.
_CARD_FLAGS = {
    "temperature": ("--temperature", "{}"),
    "top_p": ("--top-p", "{}"),
    "max_tokens": ("--max-tokens", "{:,}"),
    "samples": ("-k", "{}"),
    "preset": ("--preset", "{}"),
}


def _card_lines(report: dict[str, Any]) -> list[str]:
    card = report["card_pass@1"]
    low, high = report["pass@1_ci95"]
    verdict = {
        "below": f"this run is below it (its interval ends at {high:.1%})",
        "above": f"this run is above it (its interval starts at {low:.1%})",
        "level": "within this run's interval",
    }[report["vs_card"]]
    lines = [f"card            {card:.1%}  {report['card_model']}: {verdict}"]
    unlike = report["unlike_card"]
    if unlike:
        given = ", ".join(
            f"{_CARD_FLAGS[k][0]} {_CARD_FLAGS[k][1].format(ours)}"
            f" (card {_CARD_FLAGS[k][1].format(theirs)})"
            for k, (ours, theirs) in unlike.items()
        )
        lines.append(f"not the card's  {given}")
    return lines


def _print(report: dict[str, Any], k: int, json_out: bool) -> None:
    if json_out:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    low, high = report["pass@1_ci95"]
    problems = f"problems        {report['problems']}"
    if "suite" in report:
        problems += f" of {report['suite_problems']} ({report['suite']})"
    lines = [
        problems + (" (stopped)" if report.get("stopped") else ""),
        f"pass@1          {report['pass@1']:.1%}  (95% interval {low:.1%} to {high:.1%};"
        f" {k} sample{'s' if k > 1 else ''} each)",
    ]
    if "suite" in report:
        lines += _card_lines(report)
    if report["confidence_measured"]:
        how = f"weighted by confidence, the {report['conf_keep']:.0%} most confident samples"
    else:
        how = "confidence not measured on every problem: the majority's vote there"
    lines += [
        f"maj@{k:<11} {report[f'maj@{k}']:.1%}",
        f"conf@{k:<10} {report[f'conf@{k}']:.1%}  ({how})",
        f"thinking        {report['mean_thinking_tokens']:,.0f} tokens on average",
        f"speed           {report['tok_s']:,.1f} tokens/s ({report['tokens']:,} tokens)",
        f"wall time       {report['wall_s']:,.1f} s",
    ]
    if report["skipped"]:
        lines.append(
            f"skipped         {report['skipped']} longer than the context"
            " (counted as wrong; --stats says why)"
        )
    if report["stopped_early"]:
        lines.append(
            f"stopped early   {report['stopped_early']} samples once their vote was settled"
            f" (about {report['tokens_saved_estimate']:,} tokens saved; pass@1 counts the"
            " samples that finished, the shorter ones)"
        )
    if report["cut_at_max_tokens"]:
        lines.append(f"cut at the limit {report['cut_at_max_tokens']} (raise --max-tokens)")
    sys.stdout.write("\n".join(lines) + "\n")
