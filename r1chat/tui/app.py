"""The r1chat TUI: a conversation with live thinking, streamed off the UI thread.

The app wires the screen together and answers keys; the parts do the work:
- ChatView (widgets/chat.py): the conversation, its turns and the reply streaming in;
- Conversation (r1chat/conversation.py): what the model is sent, and saving to the history;
- messages.py: the lifecycle (model loaded or failed; a turn started, finished or failed),
  posted where it happens and handled here with `@on`.

History: a store that cannot be opened is reported in the app and the chat goes on unsaved; the
file is never replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Footer, Static

from r1chat.attachments import Attachment, read_attachment, with_attachments
from r1chat.config import ANSWER_ROOM, Settings
from r1chat.engine import Engine
from r1chat.errors import R1ChatError
from r1chat.history import HistoryStore
from r1chat.prompts import PRESETS, ChatMessage, apply_preset
from r1chat.sampling import MAX_SAMPLES
from r1chat.sanitize import sanitize
from r1chat.tui import messages
from r1chat.tui.commands import R1ChatCommands
from r1chat.tui.dialogs import FilePickerScreen, TextPromptScreen
from r1chat.tui.help import HelpScreen
from r1chat.tui.keys import focus_now
from r1chat.tui.text import last_code_block
from r1chat.tui.widgets.answer import BlockRenders
from r1chat.tui.widgets.chat import ChatView
from r1chat.tui.widgets.prompt import PromptInput
from r1chat.tui.widgets.sidebar import Sidebar
from r1chat.tui.widgets.status import StatusLine

QUIT_AGAIN_S = 3.0


class LoadReport:
    """What a loading model tells the app from its thread: download progress, and notes (what
    auto-fit chose, a pin the hub lost), each becoming a message."""

    def __init__(self, app: App[None]) -> None:
        self._app = app
        self._shown = 0.0
        self.cancel = threading.Event()  # set when the app closes: the load stops midway

    def download(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self._shown < 0.25 and (total is None or done < total):
            return  # a few updates a second are enough
        self._shown = now
        self._app.post_message(messages.DownloadProgress(done, total))

    def note(self, line: str) -> None:
        self._app.post_message(messages.LoadNote(line))


EngineFactory = Callable[[LoadReport], Engine]
StoreOpener = Callable[[], HistoryStore]


class R1ChatApp(App[None]):
    CSS_PATH = "r1chat.tcss"
    TITLE = "r1chat"
    AUTO_FOCUS = "#prompt"
    COMMANDS = App.COMMANDS | {R1ChatCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # noqa: RUF012
    # Not priority bindings: the prompt runs them in the order keys were typed (prompt.py).
    BINDINGS = [  # noqa: RUF012
        Binding("escape", "stop", "Stop"),
        # Ctrl+C stops a reply; otherwise, pressed twice, it quits (the prompt's copy comes
        # first when text is selected).
        Binding("ctrl+c", "interrupt", "Stop", show=False),
        Binding("ctrl+n", "new_chat", "New chat"),
        Binding("ctrl+t", "toggle_thinking", "Thinking"),
        Binding("ctrl+o", "copy_answer", "Copy"),
        Binding("ctrl+b", "copy_code", "Copy code"),
        Binding("f9", "copy_thinking", "Copy thinking", show=False),
        Binding("f2", "preset('math')", "Math"),
        Binding("f3", "preset('code')", "Code"),
        Binding("f4", "preset('logic')", "Logic"),
        Binding("ctrl+g", "answer_now", "Answer now"),
        Binding("ctrl+r", "regenerate", "Again", show=False),
        Binding("ctrl+up", "edit_question", "Edit question", show=False),
        Binding("escape", "cancel_edit", "Cancel edit", show=False),
        Binding("alt+up", "branch(-1)", "Previous branch", show=False),
        Binding("alt+down", "branch(1)", "Next branch", show=False),
        Binding("alt+left", "alternative(-1)", "Previous reply", show=False),
        Binding("alt+right", "alternative(1)", "Next reply", show=False),
        Binding("f8", "think_budget", "Budget", show=False),
        Binding("f12", "samples", "Samples", show=False),
        Binding("ctrl+f", "attach", "Attach", show=False),
        Binding("f1", "help", "Help"),
        # The prompt's End (line end) comes first while it holds text (PromptInput.check_action).
        Binding("end", "follow", "Follow", show=False),
        # Not in the footer (it is full at 120 columns); F1 and Ctrl+P list it.
        Binding("ctrl+s,f5", "toggle_sidebar", "History", show=False),
    ]
    # Actions that make no sense while a dialog or the help is up.
    MAIN_SCREEN_ACTIONS = frozenset(
        {"toggle_sidebar", "search_history", "rename_conversation", "delete_conversation"}
    )

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
        `HistoryStore.open`, which honours $R1CHAT_HOME) runs on mount and the app closes it.
        `engine_factory(report)` loads the model in a worker thread."""
        super().__init__()
        self.settings = settings or Settings()
        BlockRenders.math = self.settings.math == "unicode"
        self.samples = 1  # replies sampled at once for the next questions (F12)
        self.attached: list[Attachment] = []  # files that go with the next question (Ctrl+F)
        self.store: HistoryStore | None = store
        self._open_store: StoreOpener = open_store or HistoryStore.open
        self._owns_store = False
        self._resume = resume
        self._continue_latest = continue_latest
        self.engine: Engine | None = engine
        self._factory = engine_factory
        self.load_error: str | None = None
        self.history_error: str | None = None
        self.preset: str | None = None
        self.reasoning = self.settings.reasoning_params()  # F8 changes its budget
        self._send_when_loaded = False
        self._send_when_idle = False  # asked while the last reply was stopping
        self._interrupt_at = float("-inf")  # the last Ctrl+C that did not stop a reply
        self._load_report = LoadReport(self)
        # Held, not queried: messages that arrive while the app closes still find them.
        self.chat = ChatView(self.settings, clock=clock, drain_hz=drain_hz, id="conversation")
        self.prompt = PromptInput(id="prompt")
        self.status = StatusLine(id="status")
        self.sidebar = Sidebar(id="sidebar")
        if self.settings.theme in self.available_themes:
            self.theme = self.settings.theme

    # --- layout ---

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield self.sidebar
            with Vertical(id="chat"):
                yield self.chat
                yield self.prompt
        yield self.status
        yield Footer()

    @property
    def conversation_id(self) -> int | None:
        return self.chat.conversation.id

    # --- start and end ---

    async def on_mount(self) -> None:
        # SIGTERM closes the app as Ctrl+Q does: the reply so far is saved and the terminal
        # restored. SIGHUP means the terminal is gone: save, and leave without drawing (Textual,
        # writing its goodbye to a hung-up terminal, never finished). By default both killed
        # the process, losing the reply.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, self.exit)
            loop.add_signal_handler(signal.SIGHUP, self._hang_up)
        await self._open_history()
        if self.engine is not None:
            self.post_message(messages.ModelLoaded(self.engine))
            return
        self.status.set(state="loading", model=sanitize(self.settings.model or "r1-7b"))
        if self._factory is None:
            self.post_message(messages.ModelFailed(R1ChatError("no model to load")))
            return
        self._load_engine(self._factory)

    def on_unmount(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        # Quitting mid-reply: the reply's thread stops at its next token and saves what came;
        # the store must stay open until it has. A model still loading stops loading.
        self._load_report.cancel.set()
        self.chat.abandon()
        if self._owns_store and self.store is not None:
            self.store.close()
            self.store = None

    def _hang_up(self) -> None:
        self._load_report.cancel.set()
        self.chat.abandon()
        if self._owns_store and self.store is not None:
            self.store.close()
        os._exit(128 + signal.SIGHUP)

    def _refresh_footer(self) -> None:
        # A turn can end while the app closes, after its screens are gone.
        if self.screen_stack:
            self.refresh_bindings()

    # --- the model ---

    @work(thread=True, exclusive=True, group="load")
    def _load_engine(self, factory: EngineFactory) -> None:
        try:
            engine = factory(self._load_report)
        except BaseException as e:  # shown in the app; the process goes on
            self.post_message(messages.ModelFailed(e))
            return
        if not self.post_message(messages.ModelLoaded(engine)):
            engine.close()  # the app closed while the model loaded

    def on_load_note(self, event: messages.LoadNote) -> None:
        self._note(sanitize(event.line))

    def on_download_progress(self, event: messages.DownloadProgress) -> None:
        done, total = event.done, event.total
        shown = f"{done / 1e9:.2f} of {total / 1e9:.2f} GB" if total else f"{done / 1e9:.2f} GB"
        self.status.set(download=shown)

    async def on_model_loaded(self, event: messages.ModelLoaded) -> None:
        engine = self.engine = self.chat.engine = event.engine
        info = engine.info
        self.status.set(
            state="ready",
            model=sanitize(info.name),
            backend=info.backend,
            gpu_layers=info.n_gpu_layers,
            n_layers=info.n_layers,
            ctx_total=info.n_ctx,
            budget=self.reasoning.budget if info.thinks else None,
        )
        steered = [k for k in ("think_budget", "think_min") if self.settings.source(k) != "default"]
        if steered and not info.thinks:
            names = " and ".join(k.replace("_", "-") for k in steered)
            self._note(f"{sanitize(info.name)} does not think: {names} do nothing.")
        if self._send_when_loaded:
            self._send_when_loaded = False
            await self.action_send()

    def on_model_failed(self, event: messages.ModelFailed) -> None:
        error = event.error
        if isinstance(error, R1ChatError):
            what = str(error)
            todo = (
                "Fix the model setting (r1chat --model PATH_OR_ALIAS, or `model` in the "
                "config file) and start r1chat again. Ctrl+Q quits."
            )
        else:
            what = f"{type(error).__name__}: {error}"
            todo = (
                "This looks like a bug. Run `R1CHAT_LOG=1 r1chat` to see llama.cpp's log, "
                "or try `r1chat ask` with the same model. Ctrl+Q quits."
            )
        self.load_error = sanitize(what)
        self.status.set(state="error")
        self._note(
            f"Could not load the model: {self.load_error}\n{todo}", error=True, id="load-error"
        )
        self._send_when_loaded = False

    # --- a turn's life ---

    async def action_send(self) -> None:
        """Send the prompt's text. Runs in the order keys came (the prompt calls it)."""
        text = self.prompt.text
        if not text.strip():
            return
        if self.engine is None:
            if self.load_error is None:
                self._send_when_loaded = True
                self.notify("The model is still loading; your message goes when it is ready.")
            else:
                self.notify("No model is loaded (see the error above).", severity="error")
            return
        if self.chat.busy:
            if self.chat.stopping:  # Esc, then the next question at once: it goes next
                self._send_when_idle = True
            else:
                self.notify("Still answering: Esc stops it.")
            return
        self.prompt.clear()
        self.prompt.border_title = f"preset: {self.preset}" if self.preset else None
        attached, self.attached = self.attached, []
        self.prompt.border_subtitle = None
        await self.chat.ask(
            with_attachments(apply_preset(text.strip(), self.preset), attached),
            self.settings.sampling_params(),
            self.reasoning,
            self.samples,
            [a.record() for a in attached] or None,
        )
        self.status.set(state="generating", tok_s=None, ttft_s=None)
        self._refresh_footer()  # Esc (Stop) shows in the footer only while a reply runs

    def on_turn_started(self, event: messages.TurnStarted) -> None:
        self._refresh_sidebar()  # a new conversation gets its row once the question is saved

    def on_meter(self, event: messages.Meter) -> None:
        self.status.set(
            tok_s=event.tok_s, ttft_s=event.ttft_s, ctx_used=event.ctx_used, thinking=event.thinking
        )

    async def on_turn_finished(self, event: messages.TurnFinished) -> None:
        stats = event.result.stats
        stopped = event.result.finish_reason == "cancelled"
        self.status.set(
            thinking=False,
            state="stopped" if stopped else "ready",
            tok_s=stats.decode_tok_s or None,
            ttft_s=stats.ttft_s,
            ctx_used=stats.prompt_tokens + stats.completion_tokens,
        )
        self._refresh_footer()
        self._refresh_sidebar()
        await self._send_pending()

    async def on_turn_failed(self, event: messages.TurnFailed) -> None:
        self.status.set(state="ready")
        self._refresh_footer()
        await self._send_pending()

    async def _send_pending(self) -> None:
        if self._send_when_idle:
            self._send_when_idle = False
            await self.action_send()

    def on_history_failed(self, event: messages.HistoryFailed) -> None:
        self.notify(f"History: {sanitize(str(event.error))}", severity="error", markup=False)

    # --- history ---

    async def _open_history(self) -> None:
        if self.store is None:
            try:
                self.store = self._open_store()
                self._owns_store = True
            except R1ChatError as e:
                self.history_error = sanitize(str(e))
                self._note(
                    f"History is off: {self.history_error}\nThis chat is not saved; "
                    "the file is left as it is.",
                    error=True,
                    id="history-error",
                )
        self.chat.store = self.sidebar.store = self.store
        await self.chat.clear()
        self._refresh_sidebar()
        if self.store is None:
            return
        cid = self._resume
        if cid is None and self._continue_latest:
            try:
                cid = self.store.latest_conversation_id()
            except R1ChatError as e:
                self.notify(f"History: {sanitize(str(e))}", severity="error", markup=False)
                return
            if cid is None:
                self._note("No conversation to continue yet: this is a new one.")
                return
        if cid is not None:
            await self._open_conversation(cid)

    def _note(self, text: str, *, error: bool = False, id: str | None = None) -> None:
        self.chat.mount(
            Static(Content(text), classes="note -error" if error else "note", id=id, markup=False)
        )

    async def _open_conversation(self, cid: int) -> None:
        try:
            used = await self.chat.show_saved(cid)
        except R1ChatError as e:
            self._note(f"Could not open the conversation: {sanitize(str(e))}", error=True)
            return
        self.status.set(ctx_used=used, tok_s=None, ttft_s=None)
        self._refresh_sidebar()

    def _refresh_sidebar(self) -> None:
        self.sidebar.reload(self.conversation_id)

    async def on_sidebar_open(self, event: Sidebar.Open) -> None:
        cid = event.conversation_id
        mid = event.message_id
        if mid is not None and self.store is not None and not self.chat.busy:
            try:
                if self.store.show_branch_of(cid, mid) and cid == self.conversation_id:
                    await self._open_conversation(cid)  # the same one, another branch
            except R1ChatError as e:
                self.notify(f"History: {sanitize(str(e))}", severity="error", markup=False)
        if cid != self.conversation_id or self.chat.busy:
            await self.chat.when_idle(lambda: self._open_conversation(cid))
        focus_now(self.prompt)

    def on_sidebar_delete_asked(self, event: Sidebar.DeleteAsked) -> None:
        if event.conversation_id == self.conversation_id and self.chat.busy:
            self.notify("Still answering in that conversation: Esc stops it.")
            return
        self.sidebar.ask_delete(event.conversation_id)

    async def on_sidebar_deleted(self, event: Sidebar.Deleted) -> None:
        if event.conversation_id == self.conversation_id:
            await self._clear_chat()

    # --- actions ---

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MAIN_SCREEN_ACTIONS:
            return self.screen is self.screen_stack[0]
        if action == "cancel_edit":
            return self.chat.editing is not None and not self.chat.busy
        if action == "stop":
            # Esc goes on to other widgets (closing the palette, say) when nothing runs.
            return self.chat.busy and not self.chat.stopping
        return True

    def action_newline(self) -> None:
        self.prompt.action_newline()

    def action_interrupt(self) -> None:
        if self.chat.busy:
            self.action_stop()
            return
        now = time.monotonic()
        if now - self._interrupt_at < QUIT_AGAIN_S:
            self.exit()
            return
        self._interrupt_at = now
        self.notify("Press Ctrl+C again to quit (or Ctrl+Q).", timeout=QUIT_AGAIN_S)

    def action_stop(self) -> None:
        if self.chat.busy:
            self.chat.stop()
            self.status.set(state="stopped")
            self._refresh_footer()

    async def action_new_chat(self) -> None:
        await self.chat.when_idle(self._clear_chat)

    async def _clear_chat(self) -> None:
        await self.chat.clear()
        if self.engine is not None:
            self.status.set(ctx_used=0, tok_s=None, ttft_s=None, state="ready")
        self._refresh_sidebar()
        focus_now(self.prompt)

    def action_toggle_thinking(self) -> None:
        view = self.chat.target_turn(self.focused)
        if view is not None:
            view.toggle()

    def action_copy_answer(self) -> None:
        answer = self.chat.last_answer()
        if not answer:
            self.notify("No answer to copy yet.")
            return
        self.copy_to_clipboard(answer)
        self.notify(f"Copied the answer ({len(answer):,} characters).")

    def action_copy_thinking(self) -> None:
        thinking = (self.chat.last_thinking() or "").strip()
        if not thinking:
            self.notify("No thinking to copy yet.")
            return
        self.copy_to_clipboard(thinking)
        self.notify(f"Copied the thinking ({len(thinking):,} characters).")

    def action_copy_code(self) -> None:
        code = last_code_block(self.chat.last_answer() or "")
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

    async def action_regenerate(self) -> None:
        if self.chat.busy or self.engine is None:
            self.notify("Wait for the reply to finish (or Esc) first.")
            return
        if not await self.chat.regenerate(self.settings.sampling_params(), self.reasoning):
            self.notify("There is no reply to sample again yet.")

    def action_edit_question(self) -> None:
        text = self.chat.begin_edit()
        if text is None:
            self.notify("No question to edit (or a reply is running).")
            return
        self.prompt.load_text(text)
        self.prompt.move_cursor(self.prompt.document.end)
        self.prompt.border_title = "editing: Enter forks the conversation here · Esc cancels"

    def action_cancel_edit(self) -> None:
        self.chat.cancel_edit()
        self.prompt.load_text("")
        self.prompt.border_title = f"preset: {self.preset}" if self.preset else None

    async def action_branch(self, step: int) -> None:
        shown = await self.chat.switch_branch(step)
        if shown is None:
            self.notify("No question here was edited: Ctrl+↑ edits one.")
        else:
            self.notify(f"Branch {shown[0]} of {shown[1]}.")

    async def action_alternative(self, step: int) -> None:
        if not await self.chat.switch_alternative(step):
            self.notify("The last question has one reply: Ctrl+R samples another.")

    def action_answer_now(self) -> None:
        if not self.chat.answer_now():
            self.notify("Nothing is thinking right now.")

    def action_think_budget(self) -> None:
        if self.screen is not self.screen_stack[0]:
            return
        current = "" if self.reasoning.budget is None else str(self.reasoning.budget)

        def done(text: str | None) -> None:
            if text is None:
                return
            text = text.strip().replace(",", "").replace("_", "")
            if not text:
                budget = None
            elif text.isdigit() and int(text) + ANSWER_ROOM <= self.settings.max_tokens:
                budget = int(text)
            else:
                self.notify(
                    f"A budget is a number of tokens below "
                    f"{self.settings.max_tokens - ANSWER_ROOM:,} (max_tokens), or empty.",
                    severity="error",
                )
                return
            self.reasoning = replace(self.reasoning, budget=budget)
            self.status.set(budget=budget)

        self.push_screen(
            TextPromptScreen(
                "Thinking budget for the next questions, in tokens (0: no thinking; empty: none):",
                current,
            ),
            done,
        )

    def action_attach(self) -> None:
        if self.screen is not self.screen_stack[0]:
            return

        def done(path: str | None) -> None:
            if path is None:
                return
            try:
                attachment = read_attachment(path)
            except R1ChatError as e:
                self.notify(sanitize(str(e)), severity="error", markup=False)
                return
            self.attached.append(attachment)
            self._show_attached()

        self.push_screen(FilePickerScreen(), done)

    def _show_attached(self) -> None:
        """The files going with the next question, and what they cost in tokens."""
        parts = []
        for a in self.attached:
            size = f"{a.size:,} bytes"
            if self.engine is not None:
                tokens = self.engine.count_tokens([ChatMessage("user", a.text)])
                size = f"{tokens:,} tokens"
            parts.append(f"{Path(a.name).name} ({size})")
        self.prompt.border_subtitle = ("attached: " + ", ".join(parts)) if parts else None

    def action_samples(self) -> None:
        if self.screen is not self.screen_stack[0]:
            return

        def done(text: str | None) -> None:
            if text is None:
                return
            text = text.strip() or "1"
            if not text.isdigit() or not 1 <= int(text) <= MAX_SAMPLES:
                self.notify(f"Samples: a number from 1 to {MAX_SAMPLES}.", severity="error")
                return
            self.samples = int(text)
            self.status.set(samples=self.samples)

        self.push_screen(
            TextPromptScreen(
                f"Samples for the next questions (1-{MAX_SAMPLES}): each reply is sampled that"
                " many times at"
                " once and the answers vote:",
                str(self.samples),
            ),
            done,
        )

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_follow(self) -> None:
        self.chat.anchor()

    def action_toggle_sidebar(self) -> None:
        sidebar = self.sidebar
        if sidebar.is_open:
            sidebar.set_open(False)
            focus_now(self.prompt)
            return
        sidebar.set_open(True)
        self._refresh_sidebar()
        focus_now(sidebar.conversations)

    def action_search_history(self) -> None:
        self.sidebar.set_open(True)
        self._refresh_sidebar()
        focus_now(self.sidebar.search_box)

    def _current(self) -> int | None:
        if self.conversation_id is None:
            self.notify("Nothing saved in this chat yet.")
        return self.conversation_id

    def action_rename_conversation(self) -> None:
        if (cid := self._current()) is not None:
            self.sidebar.ask_rename(cid)

    def action_delete_conversation(self) -> None:
        if (cid := self._current()) is not None:
            self.sidebar.post_message(Sidebar.DeleteAsked(cid))
