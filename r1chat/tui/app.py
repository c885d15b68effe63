"""The r1chat TUI: a conversation with live thinking, streamed off the UI thread.

Data path: Enter → PromptInput.Submitted → a thread worker runs `session.run_turn` and appends
Deltas to a TurnBuffer → a UI timer (20 Hz) drains the buffer into the TurnView (thinking
TextArea, Markdown answer parts) and the status line. The engine is driven by one thread at a
time: a turn starts only once the previous turn's thread has finished with it.

History: the question is committed to the store before generation starts, the reply (or what came
before Esc, marked "cancelled") when the turn ends. A store that cannot be opened is reported in the
app and the chat goes on unsaved; the file is never replaced.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.timer import Timer
from textual.widgets import Footer, Static

from r1chat.config import Settings
from r1chat.engine import Engine, SamplingParams
from r1chat.errors import R1ChatError
from r1chat.history import HistoryStore, Message, title_from
from r1chat.prompts import PRESETS, apply_preset, history_messages
from r1chat.reasoning import extract_boxed
from r1chat.sanitize import sanitize
from r1chat.session import Delta, TurnDone, TurnResult, run_turn
from r1chat.tui.buffer import Chunk, TurnBuffer
from r1chat.tui.commands import R1ChatCommands
from r1chat.tui.dialogs import ConfirmScreen, TextPromptScreen
from r1chat.tui.help import HelpScreen
from r1chat.tui.pacing import FramePacer
from r1chat.tui.text import last_code_block, saved_thinking_title, thinking_title
from r1chat.tui.widgets.message import TurnView
from r1chat.tui.widgets.prompt import PromptInput
from r1chat.tui.widgets.sidebar import Sidebar, SidebarRow
from r1chat.tui.widgets.status import StatusLine

WELCOME = (
    "Ask a question below. The model's thinking streams into a pane beside the answer.\n"
    "Enter sends · Ctrl+J adds a line · Esc stops · F2/F3/F4 presets · F1 help · Ctrl+P commands"
)

EngineFactory = Callable[[], Engine]
StoreOpener = Callable[[], HistoryStore]
T = TypeVar("T")
SIDEBAR_LIMIT = 500
SEARCH_LIMIT = 100

TITLE_INTERVAL_S = 0.25


@dataclass
class Generation:
    """The turn being generated: where its text goes and how to stop it."""

    view: TurnView
    question: str
    buffer: TurnBuffer
    started_at: float
    cancel: threading.Event = field(default_factory=threading.Event)
    thread_done: threading.Event = field(default_factory=threading.Event)
    answer_started: bool = False
    title_at: float = 0.0  # perf_counter of the last title update


class R1ChatApp(App[None]):
    CSS_PATH = "r1chat.tcss"
    TITLE = "r1chat"
    AUTO_FOCUS = "#prompt"
    COMMANDS = App.COMMANDS | {R1ChatCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # noqa: RUF012
    BINDINGS = [  # noqa: RUF012
        Binding("escape", "stop", "Stop", priority=True),
        Binding("ctrl+n", "new_chat", "New chat", priority=True),
        Binding("ctrl+t", "toggle_thinking", "Thinking", priority=True),
        Binding("ctrl+o", "copy_answer", "Copy", priority=True),
        Binding("ctrl+b", "copy_code", "Copy code", priority=True),
        Binding("f2", "preset('math')", "Math", priority=True),
        Binding("f3", "preset('code')", "Code", priority=True),
        Binding("f4", "preset('logic')", "Logic", priority=True),
        Binding("f1", "help", "Help", priority=True),
        Binding("end", "follow", "Follow", priority=True, show=False),
        # Not in the footer (it is full at 120 columns); F1 and Ctrl+P list it.
        Binding("ctrl+s,f5", "toggle_sidebar", "History", priority=True, show=False),
    ]
    # Actions that make no sense while a dialog or the help is up.
    MAIN_SCREEN_ACTIONS = frozenset({"toggle_sidebar", "search_history", "rename_conversation",
                                     "delete_conversation"})

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        engine: Engine | None = None,
        engine_factory: EngineFactory | None = None,
        store: HistoryStore | None = None,
        open_store: StoreOpener | None = None,
        resume: int | None = None,
        continue_latest: bool = False,
        clock: Callable[[], float] = time.monotonic,
        drain_hz: float = 20.0,
    ) -> None:
        """`store` is used as given (the caller closes it); otherwise `open_store` (default
        `HistoryStore.open`, which honours $R1CHAT_HOME) runs on mount and the app closes it."""
        super().__init__()
        self.store: HistoryStore | None = store
        self._open_store: StoreOpener = open_store or HistoryStore.open
        self._owns_store = False
        self._resume = resume
        self._continue_latest = continue_latest
        self.conversation_id: int | None = None
        self.history_error: str | None = None
        self.settings = settings or Settings()
        self.engine: Engine | None = engine
        self._factory = engine_factory
        self._clock = clock
        self._drain_hz = drain_hz
        self.turns: list[tuple[str, str]] = []  # (question, answer) pairs sent back as history
        self.generation: Generation | None = None
        self.load_error: str | None = None
        self.preset: str | None = None
        self._send_when_loaded = False
        # Runs once the turn being stopped has finished (new chat, open another conversation).
        self._after_turn: Callable[[], Awaitable[None]] | None = None
        self._drain_timer: Timer | None = None
        self._draining = False
        self.pacer = FramePacer(1 / drain_hz)
        self._download_shown = 0.0
        if self.settings.theme in self.available_themes:
            self.theme = self.settings.theme

    # --- layout ---

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield Sidebar(id="sidebar")
            with Vertical(id="chat"):
                with VerticalScroll(id="conversation"):
                    yield Static(Content(WELCOME), id="welcome", markup=False)
                yield PromptInput(id="prompt")
        yield StatusLine(id="status")
        yield Footer()

    @property
    def prompt(self) -> PromptInput:
        return self.query_one("#prompt", PromptInput)

    @property
    def status(self) -> StatusLine:
        return self.query_one("#status", StatusLine)

    @property
    def conversation(self) -> VerticalScroll:
        return self.query_one("#conversation", VerticalScroll)

    @property
    def sidebar(self) -> Sidebar:
        return self.query_one("#sidebar", Sidebar)

    async def on_mount(self) -> None:
        self._drain_timer = self.set_interval(1 / self._drain_hz, self._drain, pause=True)
        await self._open_history()
        if self.engine is not None:
            await self._engine_ready(self.engine)
            return
        name = self.settings.model or "r1-7b"
        self.status.set(state="loading", model=sanitize(name))
        if self._factory is None:
            self._show_load_error(R1ChatError("no model to load"))
            return
        self._load_engine(self._factory)

    def on_unmount(self) -> None:
        # Quitting mid-reply: the decoding thread stops at its next token, and what came is saved
        # as stopped here (the UI timer that normally records it no longer runs).
        gen = self.generation
        if gen is not None:
            gen.cancel.set()
            if gen.thread_done.wait(5) and gen.buffer.result is not None:
                self._save_reply(gen.buffer.result)
        if self._owns_store and self.store is not None:
            self.store.close()
            self.store = None

    # --- loading ---

    def download_progress(self, done: int, total: int | None) -> None:
        """From the loading thread: a first-use download's progress, in the status line."""
        now = time.monotonic()
        if now - self._download_shown < 0.25 and (total is None or done < total):
            return
        self._download_shown = now
        shown = f"{done / 1e9:.2f} of {total / 1e9:.2f} GB" if total else f"{done / 1e9:.2f} GB"
        self.call_from_thread(self.status.set, download=shown)

    @work(thread=True, exclusive=True, group="load")
    def _load_engine(self, factory: EngineFactory) -> None:
        try:
            engine = factory()
        except BaseException as e:  # shown in the app; the process goes on
            self.call_from_thread(self._show_load_error, e)
            return
        self.call_from_thread(self._engine_ready, engine)

    def _shutting_down(self) -> bool:
        # A load that ends while the app quits finds its widgets already gone.
        return not self.screen_stack or not self.screen_stack[0].query("#status")

    async def _engine_ready(self, engine: Engine) -> None:
        if self._shutting_down():
            engine.close()
            return
        self.engine = engine
        info = engine.info
        self.status.set(state="ready", model=sanitize(info.name), backend=info.backend,
                        gpu_layers=info.n_gpu_layers, n_layers=info.n_layers,
                        ctx_total=info.n_ctx)
        if self._send_when_loaded and self.prompt.text.strip():
            await self._send(self.prompt.text)
        self._send_when_loaded = False

    def _show_load_error(self, error: BaseException) -> None:
        if self._shutting_down():
            return
        if isinstance(error, R1ChatError):
            what = str(error)
            todo = ("Fix the model setting (r1chat --model PATH_OR_ALIAS, or `model` in the "
                    "config file) and start r1chat again. Ctrl+Q quits.")
        else:
            what = f"{type(error).__name__}: {error}"
            todo = ("This looks like a bug. Run `R1CHAT_LOG=1 r1chat` to see llama.cpp's log, "
                    "or try `r1chat ask` with the same model. Ctrl+Q quits.")
        self.load_error = sanitize(what)
        self.status.set(state="error")
        note = Static(Content(f"Could not load the model: {self.load_error}\n{todo}"),
                      classes="note -error", id="load-error", markup=False)
        self.conversation.mount(note)
        self._send_when_loaded = False

    # --- sending ---

    async def on_prompt_input_submitted(self, event: PromptInput.Submitted) -> None:
        await self._send(event.text)

    async def _send(self, text: str) -> None:
        if not text.strip():
            return
        if self.engine is None:
            if self.load_error is None:
                self._send_when_loaded = True
                self.notify("The model is still loading; your message goes when it is ready.")
            else:
                self.notify("No model is loaded (see the error above).", severity="error")
            return
        if self.generation is not None:
            self.notify("Still answering: Esc stops it.")
            return
        question = apply_preset(text.strip(), self.preset)
        self.prompt.clear()
        await self._start_turn(question)

    async def _start_turn(self, question: str) -> None:
        assert self.engine is not None
        await self.query("#welcome").remove()
        mode = self.settings.thinking
        view = TurnView(question, folded=mode == "folded", thinks=self.engine.info.thinks)
        # Mounted (children composed) before the first drain reaches it.
        await self.conversation.mount(view)
        self.conversation.anchor()
        gen = Generation(view, question, TurnBuffer(self._clock), self._clock())
        self.generation = gen
        # Esc (Stop) shows in the footer only while a reply runs.
        self.refresh_bindings()
        s = self.settings
        params = SamplingParams(temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                max_tokens=s.max_tokens, seed=s.seed)
        self.status.set(state="generating", tok_s=None, ttft_s=None)
        self._save_question(question)
        self._generate(self.engine, gen, history_messages(self.turns), params)
        assert self._drain_timer is not None
        self.pacer.reset()
        self._drain_timer.resume()

    @work(thread=True, group="generate")
    def _generate(self, engine: Engine, gen: Generation, history: list[Any],
                  params: SamplingParams) -> None:
        buf = gen.buffer
        try:
            from r1chat.prompts import ChatMessage

            buf.set_prompt_tokens(engine.count_tokens([*history, ChatMessage("user",
                                                                             gen.question)]))
            for ev in run_turn(engine, history, gen.question, params, gen.cancel):
                if isinstance(ev, Delta):
                    buf.push(ev.kind, ev.text)
                elif isinstance(ev, TurnDone):
                    buf.finish(ev.result)
        except BaseException as e:  # shown in the turn; the app goes on
            buf.fail(e)
        finally:
            gen.thread_done.set()

    # --- streaming into the view ---

    async def _drain(self) -> None:
        gen = self.generation
        if gen is None or self._draining:
            return
        if not self.pacer.ready(force=gen.buffer.done):
            return
        self._draining = True
        try:
            await self._absorb(gen, gen.buffer.take())
        finally:
            self._draining = False

    async def _absorb(self, gen: Generation, chunk: Chunk) -> None:
        view = gen.view
        if chunk.think:
            view.append_thinking(chunk.think)
        if chunk.answer:
            if not gen.answer_started:
                gen.answer_started = True
                if self.settings.thinking == "auto" and not view.user_toggled:
                    view.fold(True)
            await view.append_answer(chunk.answer)
        tick = time.perf_counter()
        now = self._clock()
        if chunk.done:
            await self._finish(gen, chunk)
            return
        # A new title changes the title's width, which costs a layout pass: a few a second do.
        if tick - gen.title_at >= TITLE_INTERVAL_S:
            gen.title_at = tick
            state = "thinking" if not gen.answer_started else "done"
            think_end = chunk.answer_at if chunk.answer_at is not None else now
            view.set_title(thinking_title(state, think_end - gen.started_at, chunk.think_deltas))
        n = chunk.think_deltas + chunk.answer_deltas
        tok_s = ttft = None
        if chunk.first_at is not None:
            ttft = chunk.first_at - gen.started_at
            if n > 1 and now > chunk.first_at:
                tok_s = (n - 1) / (now - chunk.first_at)
        used = (chunk.prompt_tokens or 0) + n
        self.status.set(tok_s=tok_s, ttft_s=ttft, ctx_used=used)

    async def _finish(self, gen: Generation, chunk: Chunk) -> None:
        view = gen.view
        view.end_stream()
        result = chunk.result
        if result is None:
            error = chunk.error
            what = str(error) if isinstance(error, R1ChatError) else (
                f"{type(error).__name__}: {error}")
            view.show_note(f"Error: {sanitize(what)}", error=True)
            self.status.set(state="ready")
            view.set_title(thinking_title("stopped", self._clock() - gen.started_at,
                                          chunk.think_deltas))
        else:
            self._record(gen, chunk, result)
        # The thread sets thread_done right after handing over the result; wait for it so the
        # next turn never drives the engine while this one's thread still holds it.
        gen.thread_done.wait(5)
        self.generation = None
        self.refresh_bindings()
        if self._drain_timer is not None:
            self._drain_timer.pause()
        if self._after_turn is not None:
            then, self._after_turn = self._after_turn, None
            await then()

    def _record(self, gen: Generation, chunk: Chunk, result: TurnResult) -> None:
        view = gen.view
        stats = result.stats
        stopped = result.finish_reason == "cancelled"
        think_end = chunk.answer_at if chunk.answer_at is not None else self._clock()
        view.set_title(thinking_title("stopped" if stopped and not gen.answer_started else "done",
                                      think_end - gen.started_at, stats.thinking_tokens))
        if result.boxed:
            view.show_boxed(sanitize(result.boxed))
        if stopped:
            view.show_note("Stopped. What came is kept.")
        elif result.finish_reason == "length":
            view.show_note(f"Cut at the token limit ({self.settings.max_tokens:,}).")
        self.turns.append((gen.question, sanitize(result.answer)))
        self._save_reply(result)
        self.status.set(state="stopped" if stopped else "ready",
                        tok_s=stats.decode_tok_s or None, ttft_s=stats.ttft_s,
                        ctx_used=stats.prompt_tokens + stats.completion_tokens)

    # --- history ---

    async def _open_history(self) -> None:
        if self.store is None:
            try:
                self.store = self._open_store()
                self._owns_store = True
            except R1ChatError as e:
                self.history_error = sanitize(str(e))
                self._note(f"History is off: {self.history_error}\nThis chat is not saved; "
                           "the file is left as it is.", error=True, id="history-error")
        self._refresh_sidebar()
        if self.store is None:
            return
        cid = self._resume
        if cid is None and self._continue_latest:
            cid = self._history(self.store.latest_conversation_id)
            if cid is None:
                self._note("No conversation to continue yet: this is a new one.")
                return
        if cid is not None:
            await self._load_conversation(cid)

    def _note(self, text: str, *, error: bool = False, id: str | None = None) -> None:
        self.conversation.mount(Static(Content(text), classes="note -error" if error else "note",
                                       id=id, markup=False))

    def _history(self, fn: Callable[[], T]) -> T | None:
        """Run a store call; a failure is shown and the chat goes on (None comes back)."""
        try:
            return fn()
        except R1ChatError as e:
            self.notify(f"History: {sanitize(str(e))}", severity="error", markup=False)
            return None

    def _save_question(self, question: str) -> None:
        store = self.store
        if store is None:
            return
        if self.conversation_id is None:
            model = self.engine.info.name if self.engine is not None else ""
            self.conversation_id = self._history(
                lambda: store.new_conversation(title_from(question), model))
            if self.conversation_id is None:
                return
            self._refresh_sidebar()
        cid = self.conversation_id
        self._history(lambda: store.add_user_message(cid, question))

    def _save_reply(self, result: TurnResult) -> None:
        store, cid = self.store, self.conversation_id
        if store is None or cid is None:
            return
        self._history(lambda: store.add_assistant_message(
            cid, result.answer, result.thinking, result.stats.to_dict(), result.finish_reason))

    async def _load_conversation(self, cid: int) -> None:
        """Show a saved conversation (thinking folded) and continue it."""
        store = self.store
        if store is None:
            return
        try:
            messages = store.messages(cid)
            turns = store.turns(cid)
        except R1ChatError as e:
            self._note(f"Could not open the conversation: {sanitize(str(e))}", error=True)
            return
        await self.conversation.query("TurnView, #welcome").remove()
        self.turns = turns
        self.conversation_id = cid
        pairs: list[tuple[str, Message | None]] = []
        for m in messages:
            if m.role == "user":
                pairs.append((m.content, None))
            elif pairs and pairs[-1][1] is None:
                pairs[-1] = (pairs[-1][0], m)
        views = [TurnView(sanitize(q), folded=True) for q, _ in pairs]
        await self.conversation.mount_all(views)
        for view, (_, reply) in zip(views, pairs, strict=True):
            await self._fill_saved(view, reply)
        self.conversation.scroll_end(animate=False)
        self.conversation.anchor()
        last = messages[-1].stats if messages and messages[-1].stats else {}
        used = int(last.get("prompt_tokens", 0)) + int(last.get("completion_tokens", 0))
        self.status.set(ctx_used=used, tok_s=None, ttft_s=None)
        self._refresh_sidebar()

    async def _fill_saved(self, view: TurnView, reply: Message | None) -> None:
        if reply is None:
            await view.show_saved("", "", "")
            view.show_note("No reply was saved.")
            return
        stats = reply.stats or {}
        answer = sanitize(reply.content)
        title = saved_thinking_title(reply.stopped and not answer.strip(),
                                     int(stats.get("thinking_tokens", 0)))
        await view.show_saved(sanitize(reply.thinking), answer, title)
        boxed = extract_boxed(reply.content)
        if boxed:
            view.show_boxed(sanitize(boxed))
        if reply.stopped:
            view.show_note("Stopped. What came is kept.")
        elif reply.finish_reason == "length":
            view.show_note("Cut at the token limit.")

    def _refresh_sidebar(self) -> None:
        sidebar = self.sidebar
        store = self.store
        if store is None:
            sidebar.show([], empty="History is off")
            return
        query = sidebar.query_text
        if query:
            hits = self._history(lambda: store.search(query, SEARCH_LIMIT, mark=("", ""))) or []
            rows: list[SidebarRow] = []
            seen: set[int] = set()
            for hit in hits:
                if hit.conversation_id not in seen:
                    seen.add(hit.conversation_id)
                    rows.append(SidebarRow(hit.conversation_id, hit.title, hit.snippet))
            sidebar.show(rows, self.conversation_id, empty="No matches")
            return
        convs = self._history(lambda: store.list_conversations(SIDEBAR_LIMIT)) or []
        sidebar.show([SidebarRow(c.id, c.title) for c in convs], self.conversation_id)

    async def on_sidebar_open(self, event: Sidebar.Open) -> None:
        cid = event.conversation_id
        if cid != self.conversation_id or self.generation is not None:
            await self._when_idle(lambda: self._load_conversation(cid))
        self.prompt.focus()

    def on_sidebar_search(self, event: Sidebar.Search) -> None:
        self._refresh_sidebar()

    def on_sidebar_closed(self, event: Sidebar.Closed) -> None:
        self.prompt.focus()

    def on_sidebar_rename(self, event: Sidebar.Rename) -> None:
        self._ask_rename(event.conversation_id)

    def on_sidebar_delete(self, event: Sidebar.Delete) -> None:
        self._ask_delete(event.conversation_id)

    def _ask_rename(self, cid: int) -> None:
        store = self.store
        conv = self._history(lambda: store.get_conversation(cid)) if store else None
        if store is None or conv is None:
            return

        def done(title: str | None) -> None:
            if title is not None and title.strip():
                self._history(lambda: store.rename(cid, sanitize(title)))
                self._refresh_sidebar()

        self.push_screen(TextPromptScreen("Rename the conversation:", conv.title), done)

    def _ask_delete(self, cid: int) -> None:
        store = self.store
        conv = self._history(lambda: store.get_conversation(cid)) if store else None
        if store is None or conv is None:
            return
        if cid == self.conversation_id and self.generation is not None:
            self.notify("Still answering in that conversation: Esc stops it.")
            return

        async def done(yes: bool | None) -> None:
            if not yes:
                return
            try:
                store.delete(cid)
            except R1ChatError as e:
                self.notify(f"History: {sanitize(str(e))}", severity="error", markup=False)
                return
            if cid == self.conversation_id:
                await self._clear_chat()
            self._refresh_sidebar()

        self.push_screen(ConfirmScreen(
            f"Delete “{sanitize(conv.title)}” ({conv.messages} messages)? This cannot be undone."),
            done)

    # --- actions ---

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MAIN_SCREEN_ACTIONS:
            return self.screen is self.screen_stack[0]
        if action == "stop":
            # Esc goes on to other widgets (closing the palette, say) when nothing runs.
            return self.generation is not None and not self.generation.cancel.is_set()
        if action == "follow":
            return not (self.focused is self.prompt and self.prompt.text)
        return True

    async def action_send(self) -> None:
        await self._send(self.prompt.text)

    def action_newline(self) -> None:
        self.prompt.action_newline()

    def action_stop(self) -> None:
        gen = self.generation
        if gen is not None:
            gen.cancel.set()
            self.status.set(state="stopped")
            self.refresh_bindings()

    async def action_new_chat(self) -> None:
        await self._when_idle(self._clear_chat)

    async def _when_idle(self, then: Callable[[], Awaitable[None]]) -> None:
        """Run `then` now, or stop the reply and run it once the reply is saved."""
        if self.generation is not None:
            self.generation.cancel.set()
            self._after_turn = then
            return
        await then()

    async def _clear_chat(self) -> None:
        self.turns.clear()
        self.conversation_id = None
        await self.conversation.query(TurnView).remove()
        if self.engine is not None:
            self.status.set(ctx_used=0, tok_s=None, ttft_s=None, state="ready")
        self._refresh_sidebar()
        self.prompt.focus()

    def _target_turn(self) -> TurnView | None:
        node = self.focused
        while node is not None:
            if isinstance(node, TurnView):
                return node
            node = node.parent  # type: ignore[assignment]
        views = self.query(TurnView)
        return views.last() if views else None

    def action_toggle_thinking(self) -> None:
        view = self._target_turn()
        if view is not None:
            view.toggle()

    def _last_answer(self) -> str | None:
        views = self.query(TurnView)
        return views.last().answer if views else None

    def action_copy_answer(self) -> None:
        answer = self._last_answer()
        if not answer:
            self.notify("No answer to copy yet.")
            return
        self.copy_to_clipboard(answer)
        self.notify(f"Copied the answer ({len(answer):,} characters).")

    def action_copy_code(self) -> None:
        code = last_code_block(self._last_answer() or "")
        if code is None:
            self.notify("The last answer has no code block.")
            return
        self.copy_to_clipboard(code)
        self.notify(f"Copied the code block ({len(code.splitlines())} lines).")

    def action_preset(self, name: str) -> None:
        if name not in PRESETS:
            return
        self.preset = None if self.preset == name else name
        self.status.set(preset=self.preset)
        self.prompt.border_title = f"preset: {self.preset}" if self.preset else None

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_follow(self) -> None:
        self.conversation.anchor()

    def action_toggle_sidebar(self) -> None:
        sidebar = self.sidebar
        if sidebar.is_open:
            sidebar.set_open(False)
            self.prompt.focus()
            return
        sidebar.set_open(True)
        self._refresh_sidebar()
        sidebar.list.focus()

    def action_search_history(self) -> None:
        self.sidebar.set_open(True)
        self._refresh_sidebar()
        self.sidebar.search_box.focus()

    def _current(self) -> int | None:
        if self.conversation_id is None:
            self.notify("Nothing saved in this chat yet.")
        return self.conversation_id

    def action_rename_conversation(self) -> None:
        if (cid := self._current()) is not None:
            self._ask_rename(cid)

    def action_delete_conversation(self) -> None:
        if (cid := self._current()) is not None:
            self._ask_delete(cid)


def run_app(settings: Settings, resume: int | None = None,
            continue_latest: bool = False) -> None:
    """Show the app at once; the model loads in a worker thread meanwhile.

    Resuming needs the history: a store that cannot be opened, or an unknown id, raises
    R1ChatError before the app starts. Otherwise a store error is shown in the app.
    """

    def load() -> Engine:
        from r1chat.cli import load_engine

        return load_engine(settings, quiet=True,  # type: ignore[no-any-return]
                           on_download=app.download_progress)

    store: HistoryStore | None = None
    error: R1ChatError | None = None
    try:
        store = HistoryStore.open()
    except R1ChatError as e:
        if resume is not None or continue_latest:
            raise
        error = e
    if store is not None and resume is not None:
        try:
            store.get_conversation(resume)
        except R1ChatError:
            store.close()
            raise

    def failed() -> HistoryStore:
        assert error is not None
        raise error

    app = R1ChatApp(settings, engine_factory=load, store=store, open_store=failed,
                    resume=resume, continue_latest=continue_latest)
    try:
        app.run()
    finally:
        if app.generation is not None:
            app.generation.cancel.set()
            app.generation.thread_done.wait(5)
        if app.engine is not None:
            app.engine.close()
        if store is not None:
            store.close()
