"""An OpenAI-compatible server as an engine: vLLM, llama.cpp's llama-server, Ollama, any other.

Servers send a reasoning model's thinking in one of three ways: as `delta.reasoning` (current
vLLM with `--reasoning-parser deepseek_r1`, Ollama, OpenRouter), as `delta.reasoning_content`
(llama-server with `--reasoning-format deepseek`, DeepSeek's API, older vLLM) or inline as
`<think>…</think>` in the content (a server without a parser; with R1's template the content
often holds only the closing tag). `RemoteEngine` turns each of them into the stream the local
engine gives, so the turn, the history and every front end stay the same.

Why httpx and httpx-sse rather than the `openai` package: the reasoning fields are not part of
OpenAI's schema (the typed client hides them behind `model_extra`), a stop must close the
connection at once so the server stops generating, and "no token for N seconds" is a plain read
timeout; httpx gives all three directly, and httpx-sse parses the event stream as the spec says.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

from r1chat.confidence import TOP as CONFIDENCE_TOP
from r1chat.confidence import TraceConfidence
from r1chat.engines import server_samples, wire
from r1chat.engines.base import (
    Decided,
    Done,
    Event,
    FinishReason,
    ManyEvent,
    ModelInfo,
    Started,
    Stats,
    Token,
)
from r1chat.errors import R1ChatError, StreamCut
from r1chat.prompts import ChatMessage
from r1chat.reasoning import CLOSE_TAG, OPEN_TAG, Inject, Steer, ThinkingControl, ThinkSplitter
from r1chat.sampling import SamplingParams
from r1chat.sanitize import sanitize
from r1chat.secrets import Secret, StreamMask, read_key

DEFAULT_KEY_ENV = "R1CHAT_API_KEY"
RETRIES_429 = 3
MAX_RETRY_WAIT_S = 30.0
# Names that mark a reasoning model when the server cannot say (it never shares the template).
THINKING_NAMES = ("r1", "think", "qwq", "reason")

Notes = Callable[[str], None]
T = TypeVar("T")
# How often a wait on the server looks whether it was asked to stop.
POLL_S = 0.05


@dataclass(frozen=True)
class ServerKind:
    """What kind of server this is and what it can do, as far as it says."""

    name: str  # "llama-server", "vLLM", "Ollama", "llama_cpp.server" or "server"
    continues: bool  # continues a final assistant message (how steering works mid-reply)
    n_ctx: int  # 0: the server does not say
    # Requests it serves together: llama-server's slots; 1 for llama_cpp.server, which cuts a
    # running stream short when another request comes; None when it does not say.
    slots: int | None = None
    # The request field that caps the thinking, on the server itself: llama-server's
    # `thinking_budget_tokens`, vLLM's `thinking_token_budget`; None: r1chat cuts and continues.
    budget_field: str | None = None
    # llama-server's POST /v1/chat/completions/control ("reasoning_end"): answer now without
    # ending the stream.
    control: bool = False
    # The server's template writes `<think>` (llama-server's /props shows the template).
    template_thinks: bool = False


def normalize_base(url: str) -> str:
    """`url` as an API base ending in /v1 (added when the URL has no path); a URL that is not
    one is a one-line error that never shows the credentials it may carry."""
    url = url.strip()

    def bad(why: str) -> R1ChatError:
        return R1ChatError(
            f"--api-base must be an http(s) URL like http://host:8000/v1{why}, not"
            f" {redacted(url)!r}",
            2,
        )

    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port  # raises for a port that is not a number from 0 to 65535
    except ValueError:
        raise bad(" (its host or port cannot be read)") from None
    if parts.scheme not in ("http", "https") or not host:
        raise bad("")
    if port == 0:
        raise bad(" (port 0)")
    try:
        # IDNA: a label of more than 63 characters, or a name of more than 253, is no host.
        host.encode("idna")
    except UnicodeError:
        raise bad(" (the host name is not one)") from None
    if any(c.isspace() or not c.isprintable() for c in url):
        raise bad(" (it holds spaces or control characters)")
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path or '/v1'}"


def redacted(url: str) -> str:
    """`url` without the password or token it may carry (user:password@host), for messages."""
    head, sep, rest = url.partition("://")
    if not sep:
        return sanitize(url)
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return sanitize(f"{head}{sep}{netloc}{slash}{path}")


def shown_url(base: str) -> str:
    """The API base as users may see it: scheme, host, port and path, never the credentials a
    URL may carry (user:password@)."""
    parts = urlsplit(base)
    netloc = host_of(base)
    return f"{parts.scheme}://{netloc}{parts.path}"


def host_of(base: str) -> str:
    """host:port for display: never the credentials a URL may carry."""
    parts = urlsplit(base)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def key_from_env(env_name: str = DEFAULT_KEY_ENV) -> tuple[Secret | None, str | None]:
    """The key in `$env_name`, stripped, and a note when it had to be (see r1chat.secrets)."""
    return read_key(os.environ.get(env_name), f"${env_name}")


class RemoteEngine:
    """A model on an OpenAI-compatible server: a request per reply, k samples as k concurrent
    requests."""

    def __init__(
        self,
        api_base: str,
        model: str | None = None,
        *,
        key: str | Secret | None = None,
        timeout_s: float = 120.0,
        thinks: bool | None = None,
        on_note: Notes | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        import httpx

        self._httpx = httpx
        self.base = normalize_base(api_base)
        self.host = host_of(self.base)
        self.where = shown_url(self.base)
        self._on_note = on_note
        # The server sends the thinking in fields of its own (it parses the tags): known once a
        # reply had them, and from then on its content is the answer.
        self._fields_seen = False
        if isinstance(key, str):
            key, stripped = read_key(key, "the API key")
            if stripped:
                self._note(stripped)
        self._secret = key
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise R1ChatError(
                f"[engine] timeout must be a positive number of seconds, not {timeout_s}", 2
            )
        self.timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {key.value}"} if key else {}
        # Connecting is quick or hopeless; a token may take long (a long prompt to prefill), but
        # never longer than `timeout_s` between two reads.
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            follow_redirects=True,
        )
        models = self.models(cancel)
        if not models:
            raise R1ChatError(f"the server at {self.where} lists no models")
        if model is None:
            model = models[0]
        elif model not in models:
            raise R1ChatError(
                f"the server at {self.where} has no model {self.shown(model)!r}"
                f" (it has: {', '.join(self.shown(m) for m in models[:8])})",
                2,
            )
        self.model = model
        self.kind = self._detect(cancel)
        if thinks is None:
            # Only a default (whether to steer the thinking, the sampling defaults): how a
            # reply is read never depends on it.
            thinks = self.kind.template_thinks or any(n in model.lower() for n in THINKING_NAMES)
        self.info = ModelInfo(
            name=self.shown(model),
            path=self.base,
            backend=f"{self.kind.name} @ {self.host}",
            n_gpu_layers=0,
            n_layers=0,
            n_ctx=self.kind.n_ctx,
            n_ctx_train=self.kind.n_ctx,
            thinks=thinks,
        )

    # --- requests ---

    def mask(self, text: str) -> str:
        """`text` without the key, in any form (some servers echo it back)."""
        return self._secret.mask(text) if self._secret is not None else text

    def shown(self, text: str) -> str:
        """Text from the server (a model id) as it may be shown: no key, no escapes."""
        return sanitize(self.mask(wire.text(text)))

    def _scrub(self, text: str) -> str:
        """A server's message, one line, without the key: masked before it is cut, so a key
        near the cut is not shown in part."""
        text = self.mask(wire.text(text))
        text = self.mask(" ".join(text.split()))
        text = sanitize(text)
        return text if len(text) <= 300 else text[:299] + "…"

    def _waiting(
        self,
        call: Callable[[], T],
        cancel: threading.Event | None,
        abandon: Callable[[T], object] | None = None,
    ) -> T:
        """`call()` (a request) in a thread of its own, while this one waits in short steps:
        a stop (`cancel`) or a signal ends the wait at once instead of after the timeout. A
        request left behind is ended when it returns (`abandon`)."""
        done = threading.Event()
        box: list[Any] = []
        gone = threading.Event()

        def run() -> None:
            try:
                box.append((True, call()))
            except BaseException as e:  # handed to the waiting thread
                box.append((False, e))
            finally:
                done.set()
                if gone.is_set() and box and box[0][0] and abandon is not None:
                    with contextlib.suppress(Exception):
                        abandon(box[0][1])

        threading.Thread(target=run, daemon=True, name="r1chat-request").start()
        try:
            while not done.wait(POLL_S):
                if cancel is not None and cancel.is_set():
                    raise R1ChatError(f"stopped while waiting for the server at {self.where}", 130)
        except BaseException:
            gone.set()
            if done.is_set() and box and box[0][0] and abandon is not None:
                with contextlib.suppress(Exception):
                    abandon(box[0][1])
            raise
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def _request_error(self, e: Exception) -> R1ChatError:
        httpx = self._httpx
        what = self._scrub(str(e) or type(e).__name__)
        if isinstance(e, httpx.ConnectTimeout):
            return R1ChatError(f"cannot reach {self.where}: timed out connecting")
        if isinstance(e, httpx.ConnectError):
            low = what.lower()
            if "certificate" in low or "ssl" in low or "tls" in low:
                why = f"TLS failed ({self._scrub(what)})"
            elif "name or service" in low or "nodename" in low or "getaddrinfo" in low:
                why = "unknown host"
            elif "refused" in low:
                why = "connection refused"
            else:
                why = self._scrub(what)
            return R1ChatError(f"cannot reach {self.where}: {why}")
        if isinstance(e, httpx.ReadTimeout):
            return R1ChatError(
                f"the server at {self.where} sent nothing for {self.timeout_s:g} s"
                " (raise [engine] timeout for slow servers)"
            )
        if isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError)):
            return R1ChatError(f"the server at {self.where} closed the connection mid-reply")
        return R1ChatError(f"the server at {self.where} failed: {self._scrub(what)}")

    def _status_error(self, status: int, body: bytes) -> R1ChatError:
        message = _error_message(body)
        if status in (401, 403):
            return R1ChatError(
                f"the server at {self.where} refused the API key ({status}"
                f"{': ' + self._scrub(message) if message else ''});"
                f" set it in ${DEFAULT_KEY_ENV} or [engine] api_key_env",
                2,
            )
        if status == 404:
            return R1ChatError(
                f"the server at {self.where} has no such model or endpoint (404"
                f"{': ' + self._scrub(message) if message else ''})",
                2,
            )
        reason = self._scrub(message) if message else "no reason given"
        if 400 <= status < 500:
            return R1ChatError(
                f"the server at {self.where} refused the request ({status}): {reason}", 2
            )
        return R1ChatError(f"the server at {self.where} failed ({status}): {reason}")

    def _get_json(
        self, path: str, *, quiet: bool = False, cancel: threading.Event | None = None
    ) -> Any:
        url = self.base + path if path.startswith("/") else path
        # The client's timeouts ([engine] timeout) unless quiet: a probe gets 2 s.
        extra: dict[str, Any] = {"timeout": 2.0} if quiet else {}
        try:
            r = self._waiting(lambda: self._client.get(url, **extra), cancel)
        except self._httpx.HTTPError as e:
            if quiet:
                return None
            raise self._request_error(e) from None
        if r.status_code != 200:
            if quiet:
                return None
            raise self._status_error(r.status_code, r.content)
        try:
            return json.loads(r.content)
        except (ValueError, RecursionError):
            if quiet:
                return None
            raise R1ChatError(
                f"the server at {self.where} sent malformed JSON for {path}"
            ) from None

    def _bad(self, what: str, e: wire.WireError) -> R1ChatError:
        return R1ChatError(f"the server at {self.where} sent {what} that r1chat cannot read: {e}")

    def models(self, cancel: threading.Event | None = None) -> list[str]:
        data = self._get_json("/models", cancel=cancel)
        try:
            self._model_items = wire.model_ids(data)
        except wire.WireError:
            raise R1ChatError(
                f"the server at {self.where} sent no model list for /v1/models"
            ) from None
        return [i["id"] for i in self._model_items]

    def _detect(self, cancel: threading.Event | None = None) -> ServerKind:
        """Which server this is, when it says: it decides how steering continues a reply."""
        root = self.base[: -len("/v1")] if self.base.endswith("/v1") else self.base
        item = next((i for i in self._model_items if i.get("id") == self.model), {})
        if item.get("owned_by") == "me" and item.get("permissions") == []:
            # llama-cpp-python's own server: asking it anything more (even /props) while a
            # stream runs cuts that stream, and it serves one request at a time.
            return ServerKind("llama_cpp.server", False, 0, slots=1)
        props = self._get_json(root + "/props", quiet=True, cancel=cancel)
        try:
            n_ctx = wire.props_n_ctx(props)
            if n_ctx is not None:
                return ServerKind(
                    "llama-server",
                    True,
                    n_ctx,
                    slots=wire.props_slots(props),
                    budget_field="thinking_budget_tokens",
                    control=True,
                    template_thinks=wire.props_thinks(props),
                )
            if "max_model_len" in item:  # vLLM lists it with each model
                size = wire.count(item.get("max_model_len"), "max_model_len") or 0
                return ServerKind("vLLM", True, size, budget_field="thinking_token_budget")
        except wire.WireError as e:
            raise self._bad("its settings", e) from None
        if isinstance(self._get_json(root + "/api/version", quiet=True, cancel=cancel), dict):
            return ServerKind("Ollama", False, 0)
        return ServerKind("server", False, 0)

    # --- the Engine protocol ---

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        # The server holds the tokenizer; about 3 characters a token errs towards leaving out
        # an early turn rather than hitting the server's context limit.
        return sum(len(m.content) for m in messages) // 3 + 8 * len(messages)

    def stream(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        cancel: threading.Event | None = None,
        control: ThinkingControl | None = None,
    ) -> Iterator[Event]:
        """Stream a reply, as the local engine does; see `r1chat.engine.Engine`."""
        return self._stream(messages, params, cancel or threading.Event(), control)

    def stream_many(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        k: int,
        cancel: threading.Event | None = None,
        controls: Sequence[ThinkingControl | None] | None = None,
        ctx_tokens: int | None = None,
    ) -> Iterator[ManyEvent]:
        """k samples: see r1chat.engines.server_samples."""
        return server_samples.stream_many(
            self, self.kind.slots, self._note, messages, params, k, cancel, controls
        )

    def _body(
        self, messages: list[dict[str, str]], params: SamplingParams, seed: int
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "seed": seed,
        }
        if params.top_k > 0 and self.kind.name != "server":
            body["top_k"] = params.top_k  # vLLM, llama-server and Ollama take it; OpenAI does not
        if params.ignore_eos:
            body["ignore_eos"] = True  # benchmarks: vLLM and llama-server take it
        if self.kind.name in ("vLLM", "llama-server"):
            # The confidence of every token (DeepConf, r1chat.confidence); OpenAI's reasoning
            # models and DeepSeek's API refuse the fields, so only where they are known to work.
            body["logprobs"] = True
            body["top_logprobs"] = CONFIDENCE_TOP
        if messages and messages[-1]["role"] == "assistant":
            # Continue the final assistant message (vLLM's names; llama-server does it anyway).
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        return body

    def _stream(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        cancel: threading.Event,
        control: ThinkingControl | None,
    ) -> Iterator[Event]:
        t0 = time.perf_counter()
        seed = params.seed if params.seed is not None else random.SystemRandom().randrange(2**31)
        stats = Stats(seed=seed)
        kind = self.kind
        # The name's guess: whether the turn starts inside the thinking, and so steers it. How
        # the text is read never depends on it (see _Parts).
        thinks = self.info.thinks
        budget = control.params.budget if control is not None and thinks else None
        # The server's own cap on the thinking where it has one, ending it in the same stream
        # with r1chat's closing sentence; r1chat cuts and continues where it does not.
        native = budget is not None and kind.budget_field is not None
        # A budget of 0: the turn shows no thinking. Elsewhere than on a server that caps it,
        # the thinking is cut at its first token and continued with the closing text, unseen.
        hide = budget == 0
        ctl: ThinkingControl | None = control if thinks else None
        if hide and control is not None and not native:
            if kind.continues:
                ctl = ThinkingControl(replace(control.params, budget=0))
            else:
                ctl = None
                self._note(f"{kind.name} cannot skip the thinking: it runs, unseen")
        if native and ctl is not None:
            ctl.budget_slack = NATIVE_BUDGET_SLACK
        chat = [{"role": m.role, "content": m.content} for m in messages]
        parts = _Parts(self._fields_seen)
        consumer_thinks = thinks and not hide  # whether the turn's splitter is in <think>
        thinking: list[str] = []  # what the next request continues, when the thinking is cut
        hidden: list[str] = []  # held text of a turn that shows no thinking
        prefill = ""
        steering = ctl is not None
        n = 0
        t_first = 0.0
        usage_completion = 0
        finish: FinishReason = "stop"
        started = False
        stream_id: str | None = None
        controlled = False  # the server was asked to end the thinking (its control endpoint)
        # Server tokens do not map one to one onto streamed pieces: the reply's confidence goes
        # in its Stats only.
        trace = TraceConfidence()
        while True:
            messages_out: list[dict[str, str]] = chat
            if prefill:
                messages_out = [*chat, self._continued(prefill)]
            body = self._body(messages_out, replace(params, max_tokens=params.max_tokens - n), seed)
            if native and budget is not None and not prefill:
                body.update(self._budget_fields(budget, control))
            if kind.control and ctl is not None and not prefill:
                body["reasoning_control"] = True
                if control is not None:
                    body.setdefault("reasoning_budget_message", _server_message(control))
            again = False
            stop = False
            ended_by_server = False
            with self._open(body, cancel) as events:
                for what, text, usage in events:
                    if not started:
                        # Only now: some servers (llama_cpp.server) answer 200 and then end the
                        # stream at once when the prompt does not fit; nothing is saved then.
                        started = True
                        yield Started(None)
                    if what == "id":
                        stream_id = text
                        continue
                    if what == "confidence" and usage is not None:
                        for c in usage["values"]:
                            trace.add(c)
                        continue
                    if what == "usage" and usage is not None:
                        stats.prompt_tokens = usage.get("prompt_tokens") or 0
                        usage_completion += usage.get("completion_tokens") or 0
                        continue
                    if what == "finish":
                        finish = "length" if text == "length" else "stop"
                        ended_by_server = True
                        continue
                    for part, piece in parts.feed(what, text):
                        if not t_first:
                            t_first = time.perf_counter()
                        steer: Steer | None = None
                        if part == "decided":
                            thinking_now = piece == "think"
                            yield from _decided(thinking_now, hide, hidden)
                            if not hide:
                                consumer_thinks = thinking_now
                            if not thinking_now:
                                thinking.clear()
                        elif part == "open":
                            if not hide and not consumer_thinks:
                                consumer_thinks = True
                                yield Token(-1, OPEN_TAG + "\n")
                        elif part == "answer":
                            if consumer_thinks:
                                consumer_thinks = False
                                yield Token(-1, CLOSE_TAG + "\n\n")
                            n += 1
                            yield Token(0, piece)
                        elif part in ("think", "held"):
                            thinking.append(piece)
                            if ctl is not None and steering and not controlled:
                                steer = ctl.token(hash(piece))
                            n += 1
                            if hide:
                                if part == "held":
                                    hidden.append(piece)
                            else:
                                yield Token(0, piece, held=part == "held")
                        else:  # the model (or the server, for it) closed the thinking
                            if (
                                ctl is not None
                                and native
                                and ctl.ended is None
                                and _ends_with_message(thinking, control)
                            ):
                                ctl.ended = "budget"
                                ctl.by_server = True
                                stats.steered_by = "server"
                            if controlled and not _ends_with_message(thinking, control):
                                # The model closed its thinking before the server acted on the
                                # request (it says success either way): the model ended it.
                                assert ctl is not None
                                ctl.ended, ctl.by_server, stats.steered_by = "model", False, ""
                            if ctl is not None and steering and ctl.ended is None:
                                steer = ctl.close_requested()
                            if steer is None:
                                steering = False
                                if consumer_thinks:
                                    consumer_thinks = False
                                    yield Token(-1, CLOSE_TAG + "\n\n")
                        if isinstance(steer, Inject) and parts.held and not hide:
                            # Steering a held text's end makes it thinking.
                            yield Decided(True)
                            consumer_thinks = True
                        if cancel.is_set():
                            stop = True
                        elif (
                            isinstance(steer, Inject)
                            and ctl is not None
                            and ctl.ended == "user"
                            and kind.control
                            and stream_id is not None
                            and self._end_thinking(stream_id)
                        ):
                            # The server ends the thinking in this same stream.
                            controlled = True
                            ctl.by_server = True
                            stats.steered_by = "server"
                        elif isinstance(steer, Inject) and kind.continues:
                            # R1's template drops what precedes a closing tag from the message it
                            # continues: the closing text goes in without it, the model closes.
                            inject = steer.after("".join(thinking[-2:]))
                            if part in ("think", "held"):
                                inject = inject.replace(CLOSE_TAG, "").rstrip() + "\n"
                                steering = False
                            thinking.append(inject)
                            if not hide:
                                yield Token(-1, inject)
                            stats.steered_by = "r1chat"
                            again = True
                        elif steer is not None:
                            if isinstance(steer, Inject):
                                self._note(
                                    f"{kind.name} cannot continue a reply, so r1chat cannot"
                                    " end the thinking and have it answer: the reply stops here"
                                )
                            if ctl is not None and ctl.ended is None:
                                ctl.ended = "loop"
                            stop = True
                        if stop or again or n >= params.max_tokens:
                            break
                    if stop or again or n >= params.max_tokens:
                        break
            self._fields_seen = self._fields_seen or parts.fields
            if not again:
                # The stream is over: what the reader held back goes out, decided.
                finished = ended_by_server and finish == "stop" and not stop
                # Only what the server says of its template may read a cut reply as thinking;
                # never the model's name.
                stats.undecided = parts.held and not finished and not kind.template_thinks
                for part, piece in parts.close(finished=finished, prior=kind.template_thinks):
                    if part == "decided":
                        yield from _decided(piece == "think", hide, hidden)
                    elif hide and part == "held":
                        hidden.append(piece)
                    elif not hide or part == "answer":
                        yield Token(0, piece, held=part == "held")
            if cancel.is_set() or stop:
                finish = "cancelled"
                break
            if n >= params.max_tokens:
                finish = "length"
                break
            if not again:
                break
            prefill = "".join(thinking)
            parts.resume()
        t_end = time.perf_counter()
        stats.completion_tokens = max(n, usage_completion)
        stats.finish_reason = finish
        stats.ttft_s = (t_first or t_end) - t0
        if n > 1 and t_first:
            stats.decode_tok_s = (n - 1) / max(t_end - t_first, 1e-9)
        stats.total_s = t_end - t0
        if trace.n:
            stats.confidence = trace.lowest
            stats.confidence_mean = trace.mean
            stats.confidence_tail = trace.tail
        yield Done(stats)

    def _budget_fields(self, budget: int, control: ThinkingControl | None) -> dict[str, Any]:
        """The request fields that cap the thinking on the server itself."""
        field = self.kind.budget_field
        if field == "thinking_budget_tokens":
            # llama-server counts the prompt's "<think>\n" newline as the first thinking token,
            # and a budget of 0 does not cap anything: N + 1 gives N, 1 gives none.
            out: dict[str, Any] = {field: budget + 1}
            if control is not None and budget > 0:
                out["reasoning_budget_message"] = _server_message(control)
            return out
        return {str(field): budget}

    def _end_thinking(self, stream_id: str) -> bool:
        """Ask llama-server to end the thinking of the stream `stream_id` now; False when it
        cannot (r1chat then cuts and continues)."""
        try:
            r = self._client.post(
                self.base + "/chat/completions/control",
                json={"id": stream_id, "action": "reasoning_end"},
                timeout=min(10.0, self.timeout_s),
            )
            answer = r.json() if r.status_code == 200 else None
        except (self._httpx.HTTPError, ValueError):
            return False
        return isinstance(answer, dict) and answer.get("success") is True

    def _continued(self, thinking: str) -> dict[str, str]:
        """The assistant message that a continued reply goes on from: the thinking so far."""
        if self.kind.name == "llama-server":
            # It continues inside the thinking itself (continue_final_message resolves to
            # "reasoning_content" when the content is empty).
            return {"role": "assistant", "content": "", "reasoning_content": thinking}
        return {"role": "assistant", "content": f"{OPEN_TAG}\n{thinking}"}

    def _note(self, text: str) -> None:
        if self._on_note is not None:
            self._on_note(text)

    @contextlib.contextmanager
    def _open(
        self, body: dict[str, Any], cancel: threading.Event
    ) -> Iterator[Iterator[tuple[str, str, dict[str, Any] | None]]]:
        """POST the chat request; yields its events: ("reasoning" | "content" | "finish", text,
        None) or ("usage", "", usage). Retries a 429 a few times, as long as the server asks."""
        import httpx_sse

        httpx = self._httpx
        url = self.base + "/chat/completions"
        for attempt in range(RETRIES_429 + 1):
            cm = httpx_sse.connect_sse(self._client, "POST", url, json=body)

            def end(_: object, cm: Any = cm) -> None:
                cm.__exit__(None, None, None)

            try:
                # A server may take its time before it answers at all: Esc still stops at once.
                source = self._waiting(cm.__enter__, cancel, end)
            except httpx.HTTPError as e:
                raise self._request_error(e) from None
            response = source.response
            if response.status_code == 429 and attempt < RETRIES_429:
                wait = _retry_after(response.headers.get("retry-after"), attempt)
                cm.__exit__(None, None, None)
                self._note(f"the server is busy (429): retrying in {wait:g} s")
                if cancel.wait(wait):
                    raise R1ChatError("stopped while waiting for the server", 130)
                continue
            if response.status_code != 200:
                body_bytes = response.read()
                cm.__exit__(None, None, None)
                raise self._status_error(response.status_code, body_bytes)
            break
        closed = threading.Event()

        def watch() -> None:
            # A stop must not wait for the next token: closing the response ends the read at
            # once, and the connection's close tells the server to stop generating.
            while not closed.is_set():
                if cancel.wait(0.05):
                    with contextlib.suppress(Exception):
                        response.close()
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            yield self._events(source, cancel)
        finally:
            closed.set()
            with contextlib.suppress(Exception):
                cm.__exit__(None, None, None)

    def _events(
        self, source: Any, cancel: threading.Event
    ) -> Iterator[tuple[str, str, dict[str, Any] | None]]:
        import httpx_sse

        httpx = self._httpx
        done = False
        seen = False
        finished = False
        last_id: str | None = None
        text = _Texts(self._secret)
        try:
            for sse in source.iter_sse():
                data = sse.data
                seen = True
                if data.strip() == "[DONE]":
                    done = True
                    break
                if not data.strip():
                    continue
                try:
                    event = wire.chunk(json.loads(data))
                except (ValueError, RecursionError) as e:
                    if isinstance(e, wire.WireError):
                        raise self._bad("an event", e) from None
                    raise R1ChatError(
                        f"the server at {self.where} sent malformed JSON in its stream"
                    ) from None
                if event.error is not None:
                    raise R1ChatError(
                        f"the server at {self.where} failed: {self._scrub(event.error)}"
                    )
                if event.id is not None and event.id != last_id:
                    last_id = event.id
                    yield ("id", event.id, None)
                for kind, piece in event.pieces:
                    for k, t in text.feed(kind, piece):
                        yield (k, t, None)
                for reason in event.finishes:
                    finished = True
                    yield ("finish", reason, None)
                if event.confidences:
                    yield ("confidence", "", {"values": event.confidences})
                if event.prompt_tokens is not None or event.completion_tokens is not None:
                    usage = {
                        "prompt_tokens": event.prompt_tokens,
                        "completion_tokens": event.completion_tokens,
                    }
                    yield ("usage", "", usage)
        except httpx_sse.SSEError:
            raise R1ChatError(f"the server at {self.where} did not send an event stream") from None
        except httpx.HTTPError as e:
            if cancel.is_set():
                return
            raise self._request_error(e) from None
        finally:
            # What was held back (the start of what might have been the key, half a surrogate
            # pair) goes out when the stream ends, however it ends.
            rest = text.close()
        for k, t in rest:
            yield (k, t, None)
        if not done and not cancel.is_set():
            if not seen:
                raise StreamCut(
                    f"the server at {self.where} ended the stream without a reply"
                    " (is the prompt longer than its context? its log will say)",
                    "empty",
                )
            raise StreamCut(
                f"the server at {self.where} ended the stream before it was done", "cut"
            )
        if done and not finished and not cancel.is_set():
            # llama_cpp.server ends a stream this way when another request takes its place.
            raise StreamCut(
                f"the server at {self.where} cancelled the reply (its stream ended without a"
                " finish reason: another request may have taken its place)",
                "cancelled",
            )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


class _Texts:
    """The stream's text, per kind (reasoning, content), with surrogate pairs split between
    events joined and the key masked even when it is split between events."""

    def __init__(self, secret: Secret | None) -> None:
        self._secret = secret
        self._open: dict[str, tuple[wire.Surrogates, StreamMask | None]] = {}
        self._last = ""

    def feed(self, kind: str, piece: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self._last and self._last != kind:
            out.extend(self._flush(self._last))  # held text goes out before the other kind's
        self._last = kind
        joiner, mask = self._open.setdefault(
            kind, (wire.Surrogates(), self._secret.stream() if self._secret else None)
        )
        piece = joiner.feed(piece)
        if mask is not None:
            piece = mask.feed(piece)
        if piece:
            out.append((kind, piece))
        return out

    def _flush(self, kind: str) -> list[tuple[str, str]]:
        joiner, mask = self._open.pop(kind, (None, None))
        if joiner is None:
            return []
        rest = joiner.close()
        if mask is not None:
            rest = mask.feed(rest) + mask.close()
        return [(kind, rest)] if rest else []

    def close(self) -> list[tuple[str, str]]:
        return [part for kind in list(self._open) for part in self._flush(kind)]


class _Parts:
    """Whatever way the server sends the thinking → parts, decided from the stream alone, never
    from the model's name:

    - `reasoning` / `reasoning_content` fields are thinking (the server parses the tags); once
      a server has sent them, its content is the answer;
    - content that opens with `<think>` (after whitespace) is thinking until `</think>`;
    - content with no opener is held: a `</think>` makes what came before it thinking (a
      template that opens the thinking in the prompt), the end of the stream makes it the answer
      (a model that does not think, or a thinking the server parsed away).

    Parts: ("open", "") the thinking begins; ("think", text); ("close", "") the model ended it;
    ("answer", text); ("held", text), then ("decided", "think" | "answer") once it is known.
    """

    def __init__(self, fields: bool) -> None:
        self.fields = fields
        self._state = "lead"  # lead | think | held | answer
        self._lead = ""
        self._rlead = ""  # the first reasoning text, until it shows whether it opens with a tag
        self._splitter = ThinkSplitter(in_think=True)
        self._answer_lead = True  # the answer starts at its first non-blank character

    @property
    def held(self) -> bool:
        return self._state == "held"

    def resume(self) -> None:
        """The reply is continued from inside its thinking."""
        self._state = "think"
        self._splitter = ThinkSplitter(in_think=True)

    def feed(self, kind: str, text: str) -> list[tuple[str, str]]:
        if kind == "reasoning":
            return self._reasoning(text)
        return self._content(text)

    def _reasoning(self, text: str) -> list[tuple[str, str]]:
        self.fields = True
        out: list[tuple[str, str]] = []
        if self._state == "lead":
            # A `<think>` the model wrote itself, left in the field by the server's parser, is
            # not thinking: it goes, as the local engine drops it.
            self._rlead += text
            lead = self._rlead.lstrip()
            if not lead or (len(lead) < len(OPEN_TAG) and OPEN_TAG.startswith(lead)):
                return []
            text = lead[len(OPEN_TAG) :] if lead.startswith(OPEN_TAG) else self._rlead
            self._state, self._lead, self._rlead = "think", "", ""
            out.append(("open", ""))
        elif self._state == "held":  # content first, then a field: that content was answer
            out += self._decide("answer")
        if self._state == "think":
            out.append(("think", text))
        else:  # thinking after the answer began (a confused server) stays visible, as answer
            out += self._answer(text)
        return out

    def _content(self, text: str) -> list[tuple[str, str]]:
        if self._state == "lead":
            self._lead += text
            buf = self._lead.lstrip()
            if not buf or (
                len(buf) < len(CLOSE_TAG)
                and (OPEN_TAG.startswith(buf) or CLOSE_TAG.startswith(buf))
            ):
                return []  # blank so far, or the start of a tag
            self._lead = ""
            if buf.startswith(OPEN_TAG):
                self._state = "think"
                return [("open", ""), *self._split(buf[len(OPEN_TAG) :])]
            if buf.startswith(CLOSE_TAG):  # an empty thinking opened by the prompt
                self._state = "answer"
                return [("open", ""), ("close", ""), *self._answer(buf[len(CLOSE_TAG) :])]
            if self.fields:
                self._state = "answer"
                return self._answer(buf)
            self._state = "held"
            return self._split(buf)
        if self._state == "think" and self.fields:
            # The server parses the tags: its content is the answer, the thinking is over.
            return [*self._closed(), *self._answer(text)]
        if self._state in ("think", "held"):
            return self._split(text)
        return self._answer(text)

    def _split(self, text: str) -> list[tuple[str, str]]:
        """Text inside the thinking (or held): up to a `</think>`, then the answer."""
        out: list[tuple[str, str]] = []
        for part, piece in self._splitter.feed(text):
            if part == "think":
                out.append(("held" if self._state == "held" else "think", piece))
            else:
                out += self._closed()
                out += self._answer(piece)
        if not self._splitter.in_think:
            out += self._closed()
        return out

    def _closed(self) -> list[tuple[str, str]]:
        if self._state == "answer":
            return []
        out = self._decide("think") if self._state == "held" else []
        self._state = "answer"
        return [*out, ("close", "")]

    def _decide(self, kind: str) -> list[tuple[str, str]]:
        self._state = "think" if kind == "think" else "answer"
        return [("decided", kind)]

    def _answer(self, text: str) -> list[tuple[str, str]]:
        if self._answer_lead:
            # llama-server's forced close leaves the blank line after it; a model told not to
            # think may close the thinking at once.
            text = text.lstrip()
            if text.startswith(CLOSE_TAG):
                text = text[len(CLOSE_TAG) :].lstrip()
            if not text:
                return []
            self._answer_lead = False
        return [("answer", text)]

    def close(self, *, finished: bool, prior: bool) -> list[tuple[str, str]]:
        """The stream ended: what was held back goes out. Held text is the answer when the
        server finished the reply; a reply cut short (the token limit, a stop) may have been
        cut inside its thinking, which only the server's template (`prior`: it writes
        `<think>`) can tell; without it, the answer, and the caller says so."""
        if self._state == "lead":
            rest, self._lead = self._lead, ""
            if self._rlead.strip():  # a reasoning field that was only the start of a tag
                out = [("open", ""), ("think", self._rlead)]
                self._rlead = ""
                return out
            return self._answer(rest) if rest.strip() else []
        if self._state in ("think", "held"):
            kind = "held" if self._state == "held" else "think"
            out = [(kind, piece) for _, piece in self._splitter.close()]
            if self._state == "held":
                decided = "think" if prior and not finished else "answer"
                out += self._decide(decided)
            return out
        return []


# Tokens past the budget before r1chat cuts a thinking that the server was asked to cap: the
# server's closing sentence is about 15 tokens; a server that ignores the field is cut soon after.
NATIVE_BUDGET_SLACK = 48


def _decided(thinking: bool, hide: bool, hidden: list[str]) -> Iterator[Event]:
    """The events that say what the held text was. A turn that shows no thinking (`hide`)
    kept it back itself (`hidden`): out as the answer, or dropped as thinking."""
    if not hide:
        yield Decided(thinking)
    elif not thinking:
        for held in hidden:
            yield Token(0, held)
    hidden.clear()


def _server_message(control: ThinkingControl) -> str:
    """The closing sentence a server writes before it ends the thinking for r1chat."""
    return f"\n\n{control.params.budget_message}\n"


def _ends_with_message(thinking: list[str], control: ThinkingControl | None) -> bool:
    """Whether the thinking ends with r1chat's closing sentence: the server wrote it, so the
    server ended the thinking (there is no event for that)."""
    if control is None:
        return False
    tail = "".join(thinking[-64:]).rstrip()
    return tail.endswith(control.params.budget_message.strip())


def _error_message(body: bytes) -> str:
    """The message in an error response, whatever shape it has (masked and cut by the caller,
    which sees all of it: a key near the end is masked before the cut)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body.decode("utf-8", "replace").strip()[:4000]
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if isinstance(err, list) and err and isinstance(err[0], dict):
            return str(err[0].get("msg") or err[0])
        if err is not None:
            return str(err)
    return str(data)[:4000]


def _retry_after(header: str | None, attempt: int) -> float:
    try:
        wait = float(header) if header else 2.0**attempt
    except ValueError:
        wait = 2.0**attempt
    if not math.isfinite(wait):  # "nan", "inf": no wait a person could read
        wait = 2.0**attempt
    return min(max(wait, 0.0), MAX_RETRY_WAIT_S)
