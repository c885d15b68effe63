"""`r1chat eval FILE.jsonl`: grade the model on a benchmark file (see r1chat.evaluate)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

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


def eval_cmd(
    file: Annotated[Path, typer.Argument(help='JSONL: one {"problem", "answer"} per line')],
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
) -> None:
    """Grade the model on problems with known answers: pass@1, maj@k, thinking tokens, speed."""
    from r1chat.commands.spinner import load_with_spinner
    from r1chat.config import load_settings
    from r1chat.errors import R1ChatError
    from r1chat.evaluate import (
        Result,
        ResultsFile,
        eval_settings,
        load_problems,
        needs_solving,
        run,
        summary,
    )
    from r1chat.interrupts import handled
    from r1chat.prompts import PRESETS

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
        problems = load_problems(file, limit)
        # Before the model loads: results made with other settings end the run at once.
        sink = ResultsFile(out, eval_settings(settings, chosen)) if out is not None else None
        done = sink.done if sink is not None else {}
        todo = sum(needs_solving(p, done) for p in problems)
        if sink is not None and todo:
            sink.open()
        results: list[Result] = []
        t0 = time.perf_counter()
        with handled() as stop:
            engine = load_with_spinner(settings, quiet=json_out, stop=stop)

            def keep(r: Result) -> None:
                if sink is not None:
                    sink.write(r)  # flushed: a stop keeps every problem finished
                if stats:
                    sys.stderr.write(_stats_line(r) + "\n")

            bar = _Bar(len(problems), len(problems) - todo, quiet=json_out)
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
                    ):
                        results.append(r)
                        bar.advance(r)
                finally:
                    bar.close()
                    if sink is not None:
                        sink.close()
            report = summary(results, k, time.perf_counter() - t0)
            if len(results) < len(problems):
                report["stopped"] = True
            _print(report, k, json_out)
            code = stop.exit_code
    raise typer.Exit(code)


class _Bar:
    """A progress bar with an ETA on stderr (none when quiet or not a terminal)."""

    def __init__(self, total: int, done: int, *, quiet: bool) -> None:
        self._progress: Any = None
        if quiet or not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._progress = Progress(
            "eval",
            BarColumn(),
            MofNCompleteColumn(),
            "ETA",
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task("eval", total=total, completed=done)
        self._progress.start()

    def advance(self, _result: object) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _stats_line(r: Any) -> str:
    from r1chat.sanitize import sanitize

    if r.skipped is not None:
        return f"problem {sanitize(r.id)}: skipped, counted as wrong: {sanitize(r.skipped)}"
    right = sum(r.correct)
    return (
        f"problem {sanitize(r.id)}: {right} of {len(r.correct)} right"
        f" · vote {sanitize(str(r.vote))}"
        f" ({'right' if r.vote_correct else 'wrong'}) · thinking {sum(r.thinking_tokens):,} tok"
        f" · {r.tokens:,} tok in {r.seconds:.1f} s · " + ", ".join(sorted(set(r.finish)))
    )


def _print(report: dict[str, Any], k: int, json_out: bool) -> None:
    if json_out:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    lines = [
        f"problems        {report['problems']}" + (" (stopped)" if report.get("stopped") else ""),
        f"pass@1          {report['pass@1']:.1%}  ({k} sample{'s' if k > 1 else ''} each)",
        f"maj@{k:<11} {report[f'maj@{k}']:.1%}",
        f"thinking        {report['mean_thinking_tokens']:,.0f} tokens on average",
        f"speed           {report['tok_s']:,.1f} tokens/s ({report['tokens']:,} tokens)",
        f"wall time       {report['wall_s']:,.1f} s",
    ]
    if report["skipped"]:
        lines.append(
            f"skipped         {report['skipped']} longer than the context"
            " (counted as wrong; --stats says why)"
        )
    if report["cut_at_max_tokens"]:
        lines.append(f"cut at the limit {report['cut_at_max_tokens']} (raise --max-tokens)")
    sys.stdout.write("\n".join(lines) + "\n")
