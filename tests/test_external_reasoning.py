"""Other projects' reasoning-split cases, run against r1chat (issue 20): every case of vLLM's
DeepSeek-R1 reasoning parser test, llama.cpp's DeepSeek-format cases whose semantics apply to
r1chat, and canitoolcall's reasoning-only `<think>` fixtures.

Each case goes through r1chat's splitter (one chunk, per token, per character and seeded random
chunkings, all of which must agree) and through the remote client over a loopback server: once
with the thinking pre-split into `reasoning` / `reasoning_content` fields, as a server with a
reasoning parser sends it, and once inline as `<think>…</think>` in the content, as a server
without one sends it. The remote client runs each case under a model name that looks like R1 and
one that does not: it decides thinking from the stream alone, so both must give the same turn.

Where r1chat differs from upstream, the case is listed below with the reason (BOTH,
SPLITTER_ONLY, REMOTE_ONLY, FIELDS_DIFFER), and the test also checks that it still differs,
so an entry cannot outlive the difference it explains.

The data and its licences are in tests/external/ (see its README.md); canitoolcall's fixtures
are read from the pinned wheel, which carries their licences.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import canitoolcall.fixtures
import pytest
from canitoolcall.chunking import ChunkStrategy, split, split_text
from canitoolcall.fixtures import Fixture, load_fixtures
from canitoolcall.pytest_plugin import assert_conforms, family_for
from canitoolcall.results import ParseResult
from servers import ReplayServer, Reply, chunk

from r1chat.engines.remote import RemoteEngine
from r1chat.errors import R1ChatError
from r1chat.reasoning import CLOSE_TAG, OPEN_TAG, ThinkSplitter
from r1chat.sampling import SamplingParams
from r1chat.turn import TurnDone, run_turn

HERE = Path(__file__).resolve().parent / "external"
VLLM: list[dict[str, Any]] = json.loads((HERE / "vllm_deepseek_r1.json").read_text("utf-8"))
LLAMACPP: list[dict[str, Any]] = json.loads((HERE / "llamacpp_deepseek.json").read_text("utf-8"))
# The corpus of the pinned wheel itself, never $CANITOOLCALL_FIXTURES or a checkout's: the
# expectations below are for canitoolcall 0.1.1's fixtures.
CANITOOLCALL_ROOT = Path(canitoolcall.fixtures.__file__).resolve().parent / "_data" / "fixtures"
CANITOOLCALL: list[Fixture] = load_fixtures([CANITOOLCALL_ROOT])

# One name that marks a reasoning model and one that does not: the remote client must not care.
NAMES = ("deepseek-r1", "/models/plain.gguf")

Pair = tuple[str, str]  # (thinking, answer); upstream's None is ""


# --- chunkings ---------------------------------------------------------------------------------

# A stand-in tokenizer, so that no model's tokenizer is needed: the tags are single tokens, as in
# R1's vocabulary. vLLM's streaming test sends one real token per delta; a model of its parser
# fed these tokens gives every one of its expected values.
_TOKEN = re.compile(r"<think>|</think>|\n+|[^\S\n]?[^\s<]+|[^\S\n]+|<")
_SPECIAL = frozenset({OPEN_TAG, CLOSE_TAG})


def tokens(text: str) -> list[str]:
    out: list[str] = _TOKEN.findall(text)
    assert "".join(out) == text, "the stand-in tokenizer lost text"
    return out


def chunked(text: str, strategy: ChunkStrategy) -> list[str]:
    """`text` as stream deltas, grouped by canitoolcall's seeded strategies (so a failure names
    a chunking that anyone can replay): tokens grouped, or characters for `char:S`."""
    if strategy.kind == "char":
        return split_text(text, strategy)
    return ["".join(g) for g in split(tokens(text), strategy, special=_SPECIAL)]


S = ChunkStrategy.parse
# The splitter is cheap: one chunk, each tag alone, per token, random token groups, per character
# and random character groups.
SPLITTER_CHUNKINGS = tuple(
    S(x)
    for x in (
        "one",
        "special",
        "token",
        *(f"rand:{seed}:8" for seed in range(1, 6)),
        "char:0",
        *(f"char:{seed}" for seed in range(1, 4)),
    )
)
# A turn through the remote client costs a request on loopback: fewer, the ones that split a tag
# in every way (per character above all).
INLINE_CHUNKINGS = (S("one"), S("token"), S("char:0"), S("rand:1:8"))
FIELD_CHUNKINGS = {"reasoning": (S("token"),), "reasoning_content": (S("rand:2:8"),)}


# --- the cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    text: str  # what the model wrote after the prompt, as a server without a parser sends it
    in_think: bool  # the prompt ended with `<think>` (R1's template): what the splitter is told
    upstream: Pair  # upstream's expected (reasoning, content)
    # What a server with a reasoning parser streams as (reasoning field, content); None where
    # that stream still has the tags in its content (see `server_fields`).
    fields: Pair | None
    truncated: bool = False  # cut by max_tokens: the stream ends with finish_reason "length"
    partial: bool = False  # upstream parsed it as a stream still running: no close()
    remote: bool = True  # False: a splitter-only variant of a case that the remote runs once
    exact: bool = False  # upstream keeps all whitespace (vLLM): compare all but the leading
    is_reasoning_end: bool | None = None  # vLLM's check that the thinking ended
    fixture: Fixture | None = None  # canitoolcall's, for its own conformance check


def server_fields(upstream: Pair, parsed: bool = True) -> Pair | None:
    """Upstream's split as a server with that parser streams it: the reasoning field, then the
    content. None where there is no such stream apart from the inline one: the server did not
    parse (`parsed` False), or its content still holds a tag (llama.cpp leaves a lone `</think>`
    in the content when it was not told that the prompt opened the thinking), which r1chat
    reads as an inline tag, as in the inline run of the same case."""
    if not parsed or OPEN_TAG in upstream[1] or CLOSE_TAG in upstream[1]:
        return None
    return upstream


def _vllm_cases() -> Iterator[Case]:
    # vLLM's deepseek_r1 parser takes the R1 template as given: the prompt ends with `<think>\n`,
    # so text before any `</think>` is reasoning. That is in_think=True.
    for rec in VLLM:
        up = (rec["reasoning"] or "", rec["content"] or "")
        yield Case(
            f"vllm/{rec['id']}",
            rec["output"],
            True,
            up,
            server_fields(up),
            exact=True,
            is_reasoning_end=rec["is_reasoning_end"],
        )
        if OPEN_TAG in rec["output"]:
            # A model that writes `<think>` itself (R1's first template did not open it): the
            # same text with a prompt that did not open the thinking.
            yield Case(
                f"vllm/{rec['id']}/prompt-not-opened",
                rec["output"],
                False,
                up,
                server_fields(up),
                remote=False,
                exact=True,
            )


# llama.cpp cases left out, and why. Everything else in llamacpp_deepseek.json runs.
LLAMACPP_SKIPPED = {
    **{
        f"peg/{t}/continue-{what}": "llama.cpp's continuation of a prefilled assistant message"
        " (its own API); r1chat's continued replies are tested in test_remote_replay"
        for t in ("r1-distill-llama8b", "llama-cpp-deepseek-r1", "r1-distill-qwen32b")
        for what in ("content", "reasoning")
    },
    **{
        i: "a tool call: r1chat sends no tools and parses no calls"
        for i in (
            "peg/llama-cpp-deepseek-r1/end-then-tool-call",
            "peg/r1-distill-qwen32b/thinking-off-tool-call",
            "peg/qwen3.5/duplicate-think-whitespace-only",
            "peg/qwen3.5/end-only-then-tool-call",
            "legacy/llama-cpp-r1/none-with-tool-call",
            "legacy/llama-cpp-r1/deepseek-with-tool-call",
            "legacy/hermes2pro/forced-open-tool-call",
            "upstream/thinking_forced_open_tool_call_in_reasoning_no_closing_think_not_partial",
            "upstream/thinking_forced_open_tool_call_in_reasoning_no_closing_think_partial",
        )
    },
    "legacy/hermes2pro/reasoning-in-content-partial": "the partial parse of a tool call's JSON"
    " block trims the content; r1chat parses no calls",
    **{
        f"legacy/parser/tnk-{v}": "a custom tag pair (`<tnk>`): r1chat reads only `<think>`"
        for v in ("none-open", "deepseek-open", "none-unopened", "deepseek-forced-open")
    },
}


def _llamacpp_cases() -> Iterator[Case]:
    for rec in LLAMACPP:
        if rec["id"] in LLAMACPP_SKIPPED:
            continue
        passthrough = rec["reasoning_format"] == "none" or rec["reasoning_in_content"]
        up = (rec["expected_reasoning"], rec["expected_content"])
        yield Case(
            f"llama.cpp/{rec['id']}",
            # llama-server without a parser (or putting the thinking back in the content) sends
            # this as the content: it is what r1chat reads then.
            rec["expected_content"] if passthrough else rec["input"],
            rec["thinking_forced_open"],
            up,
            server_fields(up, parsed=not passthrough),
            # A partial parse is of a reply still coming: the splitter is not closed, and the
            # server replays it as a reply cut at the token limit.
            truncated=rec["is_partial"],
            partial=rec["is_partial"],
        )


def generation_prompt(fx: Fixture) -> str:
    """The prompt's end that the fixture's output follows (the family's default when the fixture
    names none), as canitoolcall's spec says."""
    if fx.generation_prompt is not None:
        return fx.generation_prompt
    family = family_for(fx)
    ref = family.reference_for(fx.reference_model) if family else None
    return (ref.default_generation_prompt if ref else None) or ""


def _reasoning_only(fx: Fixture) -> bool:
    return (
        fx.expected is not None
        and not fx.expected.tool_calls
        and bool(fx.expected.reasoning_content)
    )


def _think_scheme(fx: Fixture) -> bool:
    """R1's scheme: `<think>…</think>`, whether the model or the prompt opens it (the others are
    Harmony channels, `[THINK]`, Gemma's and Kimi K3's markup, which R1 never writes)."""
    opened = generation_prompt(fx).rstrip().endswith(OPEN_TAG)
    return opened or OPEN_TAG in fx.raw_output or CLOSE_TAG in fx.raw_output


def _canitoolcall_cases() -> Iterator[Case]:
    for fx in CANITOOLCALL:
        if not (_reasoning_only(fx) and _think_scheme(fx)):
            continue
        assert fx.expected is not None
        up = (fx.expected.reasoning_content or "", fx.expected.content or "")
        yield Case(
            f"canitoolcall/{fx.id}",
            fx.raw_output,
            generation_prompt(fx).rstrip().endswith(OPEN_TAG),
            up,
            server_fields(up),
            truncated=fx.truncated,
            fixture=fx,
        )


CASES = [*_vllm_cases(), *_llamacpp_cases(), *_canitoolcall_cases()]
BY_ID = {c.id: c for c in CASES}

# --- where r1chat differs ----------------------------------------------------------------------

HELLO = "Hello, world!\nWhat's up?"
WRITES_THINK = (
    "deliberate: r1chat drops a `<think>` that the model writes although the prompt opened the"
    " thinking (R1's distills do); llama.cpp before its PEG parser (4227c9be) kept it in the"
    " reasoning. vLLM's parser drops it too, and canitoolcall counts a tag left in the"
    " reasoning as a parser failure"
)
PASSTHROUGH = (
    "deliberate: llama.cpp was told not to parse (`--reasoning-format none`) or to put the"
    " thinking back in the content (reasoning_in_content), so it sends the tags in the content;"
    " r1chat splits them there, which is what it reads inline tags for"
)
NO_TAG = (
    "deliberate: text with no `<think>` and no `</think>` is the answer when the stream ends,"
    " a reply cut at the token limit included (nothing in the stream says otherwise there"
    " either). Upstream takes it as thinking because it knows the prompt opened `<think>`; the"
    " remote client knows nothing of the prompt and never guesses from the model's name. (The"
    " splitter is told by the template and agrees with upstream)"
)
LONE_CLOSE = (
    "deliberate: a `</think>` with no opener means the prompt opened the thinking (R1's"
    " template), so the remote client takes what precedes it as thinking. llama.cpp, and the"
    " splitter when told the prompt did not open it, keep it all as content"
)
NO_TOOLS = (
    "deliberate: r1chat sends no tools and parses no calls, so everything after `</think>` is"
    " the answer, a cut-off `<tool_call>` included; canitoolcall wants it dropped"
)
SPACE_BEFORE_THINK = (
    "NOT known to be deliberate: with a prompt that did not open the thinking, the splitter takes"
    " `<think>` as the model opening it only at the very first character, so whitespace before"
    " it makes everything the answer, tags shown (as llama.cpp's legacy parser does). vLLM,"
    " canitoolcall and the remote client's inline rule allow whitespace first"
)

# The splitter and the remote client both differ from upstream, in the same way.
BOTH: dict[str, tuple[Pair, str]] = {
    "llama.cpp/legacy/r1/forced-open-model-writes-think": (("I'm\nthinking", HELLO), WRITES_THINK),
    **{
        f"llama.cpp/{i}": (("I'm\nthinking", HELLO), PASSTHROUGH)
        for i in (
            "peg/qwen3.5/reasoning-format-none",
            "peg/nemotron3-nano/reasoning-format-none",
            "legacy/llama-cpp-r1/none-unparsed",
            "legacy/hermes2pro/none-unparsed",
        )
    },
    "llama.cpp/legacy/hermes2pro/reasoning-in-content": (
        ("I'm\nthinking", HELLO + "\n```json\n{}```"),
        PASSTHROUGH,
    ),
    "llama.cpp/legacy/parser/tnk-reasoning-in-content": (("Cogito", "Ergo sum"), PASSTHROUGH),
    "llama.cpp/upstream/deepseek_v3_1_reasoning_format_none": (("REASONING", "ok"), PASSTHROUGH),
    "canitoolcall/qwen3-xml/q38-truncated-at-tool-call-open": (
        ("The user wants the weather in Paris. I should call get_weather.", "<tool_call>"),
        NO_TOOLS,
    ),
}

# None left: the splitter accepts blank lines before `<think>` (GLM-4.5's "\n<think>"), as vLLM
# and canitoolcall do.
SPLITTER_ONLY: dict[str, tuple[Pair, str]] = {}

REMOTE_ONLY: dict[str, tuple[Pair, str]] = {
    **{
        c.id: (("", c.text), NO_TAG)
        for c in CASES
        if c.remote and c.text and OPEN_TAG not in c.text and CLOSE_TAG not in c.text and c.in_think
    },
    **{
        f"llama.cpp/legacy/{i}/not-forced-unopened": (("I'm\nthinking", HELLO), LONE_CLOSE)
        for i in ("r1", "hermes2pro")
    },
}

# A reasoning field that holds the model's own `<think>` (llama.cpp's legacy parser sends it so).
FIELDS_DIFFER: dict[str, tuple[Pair, str]] = {
    "llama.cpp/legacy/r1/forced-open-model-writes-think": (("I'm\nthinking", HELLO), WRITES_THINK),
}


def splitter_expected(case: Case) -> tuple[Pair, str | None]:
    want, why = BOTH.get(case.id) or SPLITTER_ONLY.get(case.id) or (case.upstream, None)
    return want, why


def inline_expected(case: Case) -> tuple[Pair, str | None]:
    want, why = BOTH.get(case.id) or REMOTE_ONLY.get(case.id) or (case.upstream, None)
    return want, why


def fields_expected(case: Case) -> tuple[Pair, str | None]:
    assert case.fields is not None
    want, why = FIELDS_DIFFER.get(case.id) or (case.fields, None)
    return want, why


def normal(case: Case, pair: Pair) -> Pair:
    """What is compared. r1chat drops the whitespace right after `<think>` (the prompt's own
    included) and after `</think>`, and keeps the rest. vLLM keeps all of it, so against vLLM
    only the leading whitespace goes; llama.cpp (which strips, or compares ignoring whitespace)
    and canitoolcall (soft-v1) expect stripped text, so against them all of it goes."""
    if case.exact:
        return pair[0].lstrip(), pair[1].lstrip()
    return pair[0].strip(), pair[1].strip()


# --- the splitter ------------------------------------------------------------------------------


def split_stream(chunks: Sequence[str], in_think: bool, final: bool) -> tuple[Pair, bool]:
    """(thinking, answer), and whether the splitter still is in the thinking at the end."""
    s = ThinkSplitter(in_think=in_think)
    parts = [p for c in chunks for p in s.feed(c)]
    if final:
        parts += s.close()
    assert all(text for _, text in parts), "no empty parts"
    think = "".join(t for k, t in parts if k == "think")
    answer = "".join(t for k, t in parts if k == "answer")
    return (think, answer), s.in_think


def as_parse(pair: Pair) -> ParseResult:
    return ParseResult(content=pair[1] or None, reasoning_content=pair[0] or None)


def check_against_upstream(case: Case, got: Pair, want: Pair, why: str | None, path: str) -> None:
    """`got` (exact, r1chat's) against `want` (r1chat's expectation), as `normal` compares;
    a listed difference must still be one; canitoolcall's own check where the fixture agrees."""
    assert normal(case, got) == normal(case, want), (
        f"{path}: {case.id}: got {got!r}, want {want!r}" + (f" ({why})" if why else "")
    )
    if why is not None:
        assert normal(case, got) != normal(case, case.upstream), (
            f"{path}: {case.id} now agrees with upstream: drop it from the differences"
        )
    if case.fixture is not None:
        if why is None:
            assert_conforms(case.fixture, as_parse(got), soft=True)
        else:
            with pytest.raises(AssertionError):
                assert_conforms(case.fixture, as_parse(got), soft=True)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_splitter(case: Case) -> None:
    final = not case.partial
    whole, in_think = split_stream([case.text], case.in_think, final)
    for strategy in SPLITTER_CHUNKINGS:
        got, _ = split_stream(chunked(case.text, strategy), case.in_think, final)
        assert got == whole, f"chunking {strategy.id} differs from one chunk"
    want, why = splitter_expected(case)
    check_against_upstream(case, whole, want, why, "splitter")
    if case.is_reasoning_end is not None:
        # vLLM's is_reasoning_end: a `</think>` ended the thinking.
        assert (not in_think) == case.is_reasoning_end


# --- the remote client -------------------------------------------------------------------------


def events(case: Case, mode: str, strategy: ChunkStrategy, model: str) -> list[Any]:
    """The SSE chunks a server sends for `case`: vLLM's shape for `reasoning` (content "" in the
    role chunk), llama-server's for `reasoning_content` (content null), and inline tags in the
    content for a server without a reasoning parser."""
    evs = [chunk({"role": "assistant", "content": None if mode == "reasoning_content" else ""})]
    if mode == "inline":
        evs += [chunk({"content": p}, model=model) for p in chunked(case.text, strategy)]
    else:
        assert case.fields is not None
        reasoning, content = case.fields
        evs += [chunk({mode: p}, model=model) for p in chunked(reasoning, strategy)]
        evs += [chunk({"content": p}, model=model) for p in chunked(content, strategy)]
    evs.append(chunk({}, "length" if case.truncated else "stop", model=model))
    return evs


class Remote:
    """One loopback server for the module, and an engine per model name and way of sending the
    thinking, made when first asked for. Made per test they would cost far more than the turns
    (a server's shutdown polls every half second; an engine probes the server when it is made).

    Why an engine per way: an engine remembers a server that sent the thinking in fields and
    takes its content as the answer from then on, as a real server keeps doing. So the inline
    runs get engines that never saw a field; the field runs share theirs, which changes nothing
    in them (their content never holds a tag, see `server_fields`)."""

    def __init__(self) -> None:
        self.server = ReplayServer([], models=[{"id": name} for name in NAMES])
        self._engines: dict[tuple[bool, str], RemoteEngine] = {}

    def engine(self, inline: bool, name: str) -> RemoteEngine:
        key = (inline, name)
        if key not in self._engines:
            self._engines[key] = RemoteEngine(self.server.base, name)
        return self._engines[key]

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self.server.close()


@pytest.fixture(scope="module")
def remote() -> Iterator[Remote]:
    r = Remote()
    yield r
    r.close()


def through_remote(remote: Remote, case: Case, mode: str) -> dict[str, Pair | str]:
    """(thinking, answer) per model name and chunking, or the error a turn ended with."""
    strategies = INLINE_CHUNKINGS if mode == "inline" else FIELD_CHUNKINGS[mode]
    runs = [(name, st) for name in NAMES for st in strategies]
    # Each turn makes one request, which takes the next reply.
    remote.server.replies = [Reply(events(case, mode, st, name)) for name, st in runs]
    out: dict[str, Pair | str] = {}
    for name, st in runs:
        key = f"{name} {st.id}"
        engine = remote.engine(mode == "inline", name)
        try:
            for ev in run_turn(engine, [], "What is 2+2?", SamplingParams(seed=7)):
                if isinstance(ev, TurnDone):
                    out[key] = (ev.result.thinking, ev.result.answer)
        except R1ChatError as e:
            out[key] = f"error: {e}"
    return out


REMOTE_RUNS = [
    pytest.param(c, mode, id=f"{c.id}-{mode}")
    for c in CASES
    if c.remote
    for mode in ("inline", "reasoning", "reasoning_content")
    if mode == "inline" or c.fields is not None
]


@pytest.mark.parametrize(("case", "mode"), REMOTE_RUNS)
def test_remote(remote: Remote, case: Case, mode: str) -> None:
    want, why = inline_expected(case) if mode == "inline" else fields_expected(case)
    results = through_remote(remote, case, mode)
    wrong = {
        k: v
        for k, v in results.items()
        if isinstance(v, str) or normal(case, v) != normal(case, want)
    }
    assert not wrong, (
        f"{case.id} via {mode}: want {want!r}"
        + (f" ({why})" if why else "")
        + "; got "
        + "; ".join(f"[{k}] {v!r}" for k, v in wrong.items())
    )
    # Chunking and the model's name change nothing, to the last character.
    assert len(set(results.values())) == 1, results
    got = next(iter(results.values()))
    assert isinstance(got, tuple)
    check_against_upstream(case, got, want, why, f"remote {mode}")


# --- what was taken ----------------------------------------------------------------------------


def test_every_case_is_run_or_left_out_with_a_reason() -> None:
    # A new upstream case, or a new canitoolcall version, is looked at, not silently skipped.
    assert len(VLLM) == 24
    ids = {rec["id"] for rec in LLAMACPP}
    assert len(ids) == len(LLAMACPP) == 58
    assert set(LLAMACPP_SKIPPED) <= ids
    assert sum(c.id.startswith("llama.cpp/") for c in CASES) == 58 - len(LLAMACPP_SKIPPED) == 38
    assert len(CANITOOLCALL) == 469
    reasoning_only = [fx for fx in CANITOOLCALL if _reasoning_only(fx)]
    # The other 19 use Harmony, `[THINK]`, Gemma 4's or Kimi K3's markup.
    assert len(reasoning_only) == 44
    assert sum(c.id.startswith("canitoolcall/") for c in CASES) == 25
    for table in (BOTH, SPLITTER_ONLY, REMOTE_ONLY, FIELDS_DIFFER):
        assert set(table) <= set(BY_ID), set(table) - set(BY_ID)
