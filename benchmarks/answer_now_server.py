"""What "answer now" costs on llama-server: its control endpoint, which ends the thinking inside
the running stream, against r1chat's cut-and-continue (the stream ended, the prompt and the
thinking so far sent again with the closing text), on the same server, model and turn.

Each turn thinks until --think thinking tokens, then `control.answer_now()` (the key). Per way:

  key → answer  time from answer_now() to the first answer token r1chat shows
  requests      chat requests the server began for the turn (its log)
  re-sent       prompt tokens of the requests after the first (their usage.prompt_tokens)
  re-read       of those, what the server evaluated (its timings' prompt_n, from its log): the
                rest came from its prompt cache

Both ways run the same turn in alternation, --rounds times after a warm-up; medians are shown.
The cut-and-continue turns run on a RemoteEngine whose server kind says it has no control
endpoint, as on vLLM or an older llama-server.

The default model is built here on the tests' tiny loop model's recipe (tests/tiny_models.py): a
thinking that goes round forever and, once the closing text ("... give my answer now.") ends it,
writes `</think>` and an answer, as R1 does. The tests' noise and loop models never close the
thinking themselves, so a continued request of theirs never reaches an answer. A real R1 GGUF
given as MODEL works as well.

    python benchmarks/answer_now_server.py [MODEL.gguf] [--llama-server PATH] [--think 200]
        [--rounds 5] [--prompt-tokens 500] [--no-cache-prompt]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from r1chat.bench import filler_text  # noqa: E402
from r1chat.engines.remote import RemoteEngine  # noqa: E402
from r1chat.reasoning import DEFAULT_BUDGET_MESSAGE, ReasoningParams, ThinkingControl  # noqa: E402
from r1chat.sampling import SamplingParams  # noqa: E402
from r1chat.turn import Delta, TurnDone, run_turn  # noqa: E402

LAUNCH = re.compile(r"launch_slot_: id\s+\d+ \| task (\d+) ")
PROMPT_EVAL = re.compile(r"task (\d+) \| prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens")


def build_obeying_model(path: Path) -> None:
    """The tests' loop model, except that the closing text's last token (".\\n") leads to
    `</think>`, and `</think>` (whoever wrote it) to a blank line and the answer."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import LOOP_ANSWER, LOOP_THINKING, build_bigrams, build_models, load_meta

    from r1chat.engines.llama import LlamaEngine, LoadOptions

    eng = LlamaEngine(build_models()["noise"], LoadOptions(n_ctx=256))  # its tokenizer
    try:
        (nl,) = eng.tokenize("\n")
        (blank,) = eng.tokenize("\n\n")
        (close,) = eng.tokenize("</think>")
        (think,) = eng.tokenize("<think>")
        (assistant,) = eng.tokenize("<｜Assistant｜>")
        # Both ways end the thinking with this text: the server forces it, r1chat prefills it.
        end = eng.tokenize(f"\n\n{DEFAULT_BUDGET_MESSAGE}\n")[-1]
        cycle = eng.tokenize(LOOP_THINKING)
        answer = [*eng.tokenize(LOOP_ANSWER), eng.eos_id]
    finally:
        eng.close()
    pairs = [(nl, cycle[0]), *zip(cycle, [*cycle[1:], cycle[0]], strict=True)]
    pairs += [(end, close), (close, blank), (blank, answer[0]), *itertools.pairwise(answer)]
    # The template of the tests' models leaves `<think>` to the model, as R1's first one did.
    pairs += [(assistant, think), (think, nl)]
    build_bigrams(path, load_meta(), pairs, "tiny-r1-obeys")


@dataclass
class Turn:
    key_to_answer_s: float | None
    requests: int
    resent: int | None  # None: the server sent no usage for the continued request
    reread: int
    steered_by: str
    ended: str | None


class Log:
    """The server's log from a mark on: the tasks it began and each one's prompt_n."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mark = 0

    def start(self) -> None:
        self.mark = self.path.stat().st_size

    def tasks(self) -> tuple[list[int], dict[int, int]]:
        end = time.monotonic() + 10
        while True:
            text = self.path.read_bytes()[self.mark :].decode("utf-8", "replace")
            begun = [int(m) for m in LAUNCH.findall(text)]
            # The log is written by a thread of the server's, a moment after the reply.
            if text.count("release:") >= len(begun) or time.monotonic() > end:
                return begun, {int(t): int(n) for t, n in PROMPT_EVAL.findall(text)}
            time.sleep(0.02)


def one_turn(engine: RemoteEngine, log: Log, question: str, think: int, answer: int) -> Turn:
    # "warn": the loop guard must not end a thinking that goes round on purpose.
    control = ThinkingControl(ReasoningParams(on_loop="warn"))
    params = SamplingParams(max_tokens=think + answer, seed=1)
    t_key = t_answer = None
    result = None
    log.start()
    for ev in run_turn(engine, [], question, params, control=control):
        if isinstance(ev, Delta):
            if ev.kind == "think" and t_key is None and ev.think_tokens >= think:
                control.answer_now()
                t_key = time.perf_counter()
            elif ev.kind == "answer" and t_key is not None and t_answer is None:
                t_answer = time.perf_counter()
        elif isinstance(ev, TurnDone):
            result = ev.result
    assert result is not None
    begun, prompt_n = log.tasks()
    later = begun[1:]
    return Turn(
        key_to_answer_s=t_answer - t_key if t_key and t_answer else None,
        requests=len(begun),
        resent=(result.stats.prompt_tokens or None) if later else 0,
        reread=sum(prompt_n.get(t, 0) for t in later),
        steered_by=result.stats.steered_by,
        ended=result.thinking_ended,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    binary: str, model: Path, log: Path, n_ctx: int, *, cache: bool
) -> tuple[subprocess.Popen[bytes], str]:
    """llama-server on a free port, its output in `log`; and its API base."""
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [binary, "-m", str(model), "--alias", "r1-bench", "--host", "127.0.0.1", "--port",
         str(port), "-c", str(n_ctx), "-t", str(os.cpu_count() or 1), "-np", "1",
         "--reasoning-format", "deepseek", "--cache-prompt" if cache else "--no-cache-prompt"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    end = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"llama-server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc, f"http://127.0.0.1:{port}/v1"
        except httpx.HTTPError:
            pass
        if time.monotonic() > end:
            proc.kill()
            raise SystemExit("llama-server did not start")
        time.sleep(0.2)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", type=Path, help="a GGUF (default: built here, see above)")
    p.add_argument("--llama-server", default=os.environ.get("R1CHAT_LLAMA_SERVER"))
    p.add_argument("--think", type=int, default=200, help="thinking tokens before the key")
    p.add_argument("--answer", type=int, default=256, help="most answer tokens after it")
    p.add_argument("--prompt-tokens", type=int, default=500, help="about this long a question")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--no-cache-prompt",
        action="store_true",
        help="start the server without its prompt cache: a continued request re-reads it all,"
        " as on a server whose other slots took the cache",
    )
    a = p.parse_args()
    if not a.llama_server:
        raise SystemExit("llama-server: give --llama-server PATH or set $R1CHAT_LLAMA_SERVER")
    import httpx

    with tempfile.TemporaryDirectory(prefix="r1chat-answer-now-") as tmp:
        model = a.model
        if model is None:
            model = Path(tmp) / "tiny-r1-obeys.gguf"
            build_obeying_model(model)
        log_path = Path(tmp) / "server.log"
        n_ctx = a.prompt_tokens + a.think + a.answer + 256
        proc, base = start_server(
            a.llama_server, model, log_path, n_ctx, cache=not a.no_cache_prompt
        )
        try:
            served = RemoteEngine(base)
            cut = RemoteEngine(base)
            # The fallback as a server without the endpoint gets it.
            cut.kind = dataclasses.replace(cut.kind, control=False)
            ways = {"control endpoint": served, "cut-and-continue": cut}
            log = Log(log_path)
            question = filler_text(max(1, a.prompt_tokens * 3 // 4)) + "\n\nWhat is 2+2?"
            turns: dict[str, list[Turn]] = {name: [] for name in ways}
            for engine in ways.values():  # warm-up: first graphs, the prompt cache
                one_turn(engine, log, question, a.think, a.answer)
            for r in range(a.rounds):
                order = list(ways.items()) if r % 2 == 0 else list(ways.items())[::-1]
                for name, engine in order:
                    turns[name].append(one_turn(engine, log, question, a.think, a.answer))
            props = httpx.get(base.removesuffix("/v1") + "/props", timeout=10).json()
            build = f"llama-server {props.get('build_info', '?')}"
            served.close()
            cut.close()
        finally:
            proc.kill()
            proc.wait(10)
    report(turns, model.name, build, a)
    return 0


def report(turns: dict[str, list[Turn]], model: str, build: str, a: argparse.Namespace) -> None:
    names = list(turns)
    cache = "off" if a.no_cache_prompt else "on"
    print(
        f"{build}, {model}, {os.cpu_count()} CPU threads, prompt cache {cache}; a"
        f" ~{a.prompt_tokens}-token question, answer now after {a.think} thinking tokens;"
        f" median of {a.rounds}"
    )
    rows: list[tuple[str, list[float | None], str]] = []

    def col(pick: str) -> list[float | None]:
        out: list[float | None] = []
        for name in names:
            values = [getattr(t, pick) for t in turns[name]]
            out.append(median([float(v) for v in values if v is not None]))
        return out

    ms = [v * 1000 if v is not None else None for v in col("key_to_answer_s")]
    rows.append(("key → first answer token (ms)", ms, "{:.1f}"))
    rows.append(("requests per turn", col("requests"), "{:.0f}"))
    rows.append(("prompt tokens re-sent", col("resent"), "{:.0f}"))
    rows.append(("prompt tokens re-read (prompt_n)", col("reread"), "{:.0f}"))
    print(f"  {'':<34}{names[0]:>18}{names[1]:>18}{'ratio':>9}")
    for label, values, fmt in rows:
        cells = [fmt.format(v) if v is not None else "n/a" for v in values]
        x, y = values
        ratio = f"{y / x:.2f}x" if x and y is not None else "-"
        print(f"  {label:<34}{cells[0]:>18}{cells[1]:>18}{ratio:>9}")
    for name in names:
        how = sorted({f"{t.ended}/{t.steered_by}" for t in turns[name]})
        missing = sum(t.key_to_answer_s is None for t in turns[name])
        note = f", {missing} without an answer" if missing else ""
        print(f"  {name}: thinking ended/steered by {', '.join(how)}{note}")
    print("  (ratio: cut-and-continue / control endpoint)")


if __name__ == "__main__":
    raise SystemExit(main())
