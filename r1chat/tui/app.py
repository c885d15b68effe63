"""The r1chat TUI: a conversation with live thinking, streamed off the UI thread.

The app wires the screen together and answers keys; the parts do the work:
- ChatView (widgets/chat.py) shows the conversation; LiveTurn (live.py) runs a reply;
- Conversation (r1chat/conversation.py) decides what the model is sent and what is saved;
- messages.py: the lifecycle (model loaded or failed; a question asked; a reply or samples
  finished, a turn failed), posted where it happens and handled here.

The command that runs the app (r1chat.commands.chat) owns the history file and the signals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.css.query import NoMatches
from textual.markup import escape
from textual.widgets import Footer, Static

from r1chat.config import Settings
from r1chat.conversation import Chats
from r1chat.engines.base import Engine
from r1chat.errors import R1ChatError
from r1chat.prompts import PRESETS, ChatMessage
from r1chat.sampling import MAX_SAMPLES, parse_samples
from r1chat.sanitize import sanitize
from r1chat.tui import messages
from r1chat.tui.dialogs import Entered, FilePickerScreen, TextPromptScreen
from r1chat.tui.help import HelpScreen
from r1chat.tui.keymap import KEYS, MAIN_SCREEN_ONLY
from r1chat.tui.keys import focus_now
from r1chat.tui.loader import EngineFactory, ModelLoader
from r1chat.tui.palette import R1ChatCommands
from r1chat.tui.text import last_code_block, load_failure, model_label
from r1chat.tui.widgets.answer import BlockRenders
from r1chat.tui.widgets.chat import ChatView
from r1chat.tui.widgets.prompt import PromptInput
from r1chat.tui.widgets.sidebar import Sidebar
from r1chat.tui.widgets.status import StatusLine

QUIT_AGAIN_S = 3.0


class R1ChatApp(App[None]):
    CSS_PATH = "r1chat.tcss"
    TITLE = "r1chat"
    AUTO_FOCUS = "#prompt"
    COMMANDS = App.COMMANDS | {R1ChatCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # noqa: RUF012
    BINDINGS = KEYS
    MAIN_SCREEN_ACTIONS = MAIN_SCREEN_ONLY

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        engine: Engine | None = None,
        engine_factory: EngineFactory | None = None,
        chats: Chats | None = None,
        history_error: str | None = None,
        resume: int | None = None,
        notes: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        drain_hz: float = 20.0,
    ) -> None:
        """`chats`: where conversations are saved (None: not saved; `history_error` says why).
        `engine_factory(report)` loads the model in a worker thread."""
        super().__init__()
        self.settings = settings or Settings()
        BlockRenders.math = self.settings.math == "unicode"
        self.samples = self.settings.samples  # replies sampled at once (F12)
        self.engine: Engine | None = engine
        self._resume = resume
        self._notes = notes
        self.load_error: str | None = None
        self.history_error = history_error
        self.reasoning = self.settings.reasoning_params()  # F8 changes its budget
        self._send_when_loaded = False
        self._send_when_idle = False  # asked while the last reply was stopping
        self._interrupt_at = float("-inf")  # the last Ctrl+C that did not stop a reply
        self.loader = ModelLoader(self, engine_factory, remote=bool(self.settings.api_base))
        # Held, not queried: messages that arrive while the app closes still find them.
        chats = chats or Chats(None)
        self.chat = ChatView(
            self.settings, chats, clock=clock, drain_hz=drain_hz, id="conversation"
        )
        self.prompt = PromptInput(id="prompt")
        self.status = StatusLine(id="status")
        self.sidebar = Sidebar(chats.store, id="sidebar")
        self.sidebar.busy = lambda: self.conversation_id if self.chat.busy else None
        if self.settings.theme in self.available_themes:
            self.theme = self.settings.theme

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
        if self.history_error is not None:
            self._note(
                f"History is off: {sanitize(self.history_error)}\nThis chat is not saved; "
                "the file is left as it is.",
                error=True,
                id="history-error",
            )
        for note in self._notes:
            self._note(note)
        self._refresh_sidebar()
        if self._resume is not None:
            await self._open_conversation(self._resume)
        if self.engine is not None:
            self.post_message(messages.ModelLoaded(self.engine))
            return
        self.status.set(
            state="loading", model=model_label(self.settings.model, self.settings.api_base)
        )
        if not self.loader.start():
            self.post_message(messages.ModelFailed(R1ChatError("no model to load")))

    def on_unmount(self) -> None:
        # Quitting mid-reply: the reply's thread stops at its next token and saves what came.
        # A model still loading stops loading.
        self.loader.stop()
        self.chat.abandon()

    def _refresh_footer(self) -> None:
        # A turn can end while the app closes, after its screens are gone.
        if self.screen_stack:
            self.refresh_bindings()

    # --- the model ---

    def on_load_note(self, event: messages.LoadNote) -> None:
        self._note(sanitize(event.line))

    def on_download_progress(self, event: messages.DownloadProgress) -> None:
        self.status.show_download(event.done, event.total)

    async def on_model_loaded(self, event: messages.ModelLoaded) -> None:
        engine = self.engine = self.chat.engine = event.engine
        if self.loader.loaded():
            self._note(f"Loaded: {sanitize(engine.info.name)} ({sanitize(engine.info.backend)}).")
        self.status.show_model(engine.info, self.reasoning.budget, self.samples)
        steered = [k for k in ("think_budget", "think_min") if self.settings.source(k) != "default"]
        if steered and not engine.info.thinks:
            names = " and ".join(k.replace("_", "-") for k in steered)
            self._note(f"{sanitize(engine.info.name)} is not known to think; ignored: {names}.")
        if self._send_when_loaded:
            self._send_when_loaded = False
            await self.action_send()

    def on_model_failed(self, event: messages.ModelFailed) -> None:
        # A server that is down or busy may come up: the loader tries again, then longer.
        delay = self.loader.failed(event.error)
        self.load_error, note = load_failure(event.error, retry_in=delay)
        label = model_label(self.settings.model, self.settings.api_base)
        self.status.set(state="error" if delay is None else "retrying", model=label)
        try:  # the note of the last try says what happened this time
            self.query_one("#load-error", Static).update(Content(note))
        except NoMatches:
            self._note(note, error=True, id="load-error")
        if delay is None:
            self._send_when_loaded = False

    def action_retry_load(self) -> None:
        """Load the model again now (a server that was down, say)."""
        if self.engine is None and self.loader.start():
            self.load_error = None
            self.status.set(state="loading")

    # --- a turn's life ---

    async def action_send(self) -> None:
        """Send the prompt's text. Runs in the order keys came (the prompt calls it)."""
        if not self.prompt.text.strip():
            return
        if self.engine is None:
            if self.load_error is None or self.loader.waiting:
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
        question, files = self.prompt.take()
        await self.chat.ask(
            question, self.settings.sampling_params(), self.reasoning, self.samples, files
        )
        self.status.set(state="generating", tok_s=None, ttft_s=None)
        self._refresh_footer()  # Esc (Stop) shows in the footer only while a reply runs

    def on_question_asked(self, event: messages.QuestionAsked) -> None:
        self._refresh_sidebar()  # a new conversation gets its row once the question is saved

    def on_meter(self, event: messages.Meter) -> None:
        self.status.set(
            tok_s=event.tok_s, ttft_s=event.ttft_s, ctx_used=event.ctx_used, thinking=event.thinking
        )

    async def on_turn_finished(self, event: messages.TurnFinished) -> None:
        stats = event.result.stats
        await self._turn_over(
            event.result.finish_reason == "cancelled",
            tok_s=stats.decode_tok_s or None,
            ttft_s=stats.ttft_s,
            ctx_used=stats.prompt_tokens + stats.completion_tokens,
        )

    async def on_samples_finished(self, event: messages.SamplesFinished) -> None:
        stats = event.samples.stats
        await self._turn_over(event.samples.stopped, tok_s=stats.decode_tok_s or None)

    async def on_turn_failed(self, event: messages.TurnFailed) -> None:
        await self._turn_over(False)

    async def _turn_over(self, stopped: bool, **figures: object) -> None:
        self.status.set(thinking=False, state="stopped" if stopped else "ready", **figures)
        self._refresh_footer()
        self._refresh_sidebar()
        if self._send_when_idle:
            self._send_when_idle = False
            await self.action_send()

    def on_history_failed(self, event: messages.HistoryFailed) -> None:
        self.notify(f"History: {sanitize(str(event.error))}", severity="error", markup=False)

    # --- conversations ---

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
        if cid != self.conversation_id or self.chat.busy or event.moved:
            await self.chat.when_idle(lambda: self._open_conversation(cid))
        focus_now(self.prompt)

    async def on_sidebar_deleted(self, event: Sidebar.Deleted) -> None:
        if event.conversation_id == self.conversation_id:
            await self._clear_chat(focus=False)  # the list keeps it: u undoes
        title = escape(sanitize(event.title).replace("\n", " "))
        self.notify(
            f"“{title}” is in the trash. [@click=app.undo_delete]Undo[/] (u in the list)",
            timeout=10,
        )

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

    async def _clear_chat(self, focus: bool = True) -> None:
        await self.chat.clear()
        if self.engine is not None:
            self.status.set(ctx_used=0, tok_s=None, ttft_s=None, state="ready")
        self._refresh_sidebar()
        if focus:
            focus_now(self.prompt)

    def action_toggle_thinking(self) -> None:
        view = self.chat.target_turn(self.focused)
        if view is not None:
            view.toggle()

    def action_copy(self, what: str) -> None:
        """Copy the last answer, the focused (or last) thinking, or the last code block."""
        text = {
            "answer": self.chat.last_answer,
            "thinking": lambda: (self.chat.last_thinking() or "").strip(),
            "code block": lambda: last_code_block(self.chat.last_answer() or ""),
        }[what]()
        if not text:
            self.notify(
                f"No {what} to copy yet."
                if what != "code block"
                else "The last answer has no code block."
            )
            return
        self.copy_to_clipboard(text)
        size = (
            f"{len(text.splitlines())} lines"
            if what == "code block"
            else f"{len(text):,} characters"
        )
        self.notify(f"Copied the {what} ({size}).")

    def action_preset(self, name: str) -> None:
        if name in PRESETS:
            self.status.set(preset=self.prompt.toggle_preset(name))

    async def action_regenerate(self) -> None:
        if self.engine is None:
            self.notify("No model is loaded yet.")
        else:
            await self.chat.regenerate(self.settings.sampling_params(), self.reasoning)

    def action_edit_question(self) -> None:
        text = self.chat.begin_edit()
        if text is not None:
            self.prompt.load_text(text)
            self.prompt.move_cursor(self.prompt.document.end)
            self.prompt.show_mode(editing=True)

    def action_cancel_edit(self) -> None:
        self.chat.cancel_edit()
        self.prompt.load_text("")
        self.prompt.show_mode()

    async def action_branch(self, step: int) -> None:
        await self.chat.switch_branch(step)

    async def action_alternative(self, step: int) -> None:
        await self.chat.switch_alternative(step)

    def action_answer_now(self) -> None:
        self.chat.answer_now()

    def action_think_budget(self) -> None:
        def done(entered: Entered[int | None] | None) -> None:
            if entered is not None:
                self.reasoning = replace(self.reasoning, budget=entered.value)
                self.status.set(budget=entered.value)

        current = "" if self.reasoning.budget is None else str(self.reasoning.budget)
        label = "Thinking budget for the next questions, in tokens (0: no thinking; empty: none):"
        self.push_screen(TextPromptScreen(label, current, self.settings.parse_budget), done)

    def action_samples(self) -> None:
        def done(entered: Entered[int] | None) -> None:
            if entered is not None:
                self.samples = entered.value
                self.status.set(samples=self.samples)

        label = (
            f"Samples for the next questions (1-{MAX_SAMPLES}): each reply is sampled that many"
            " times at once and the answers vote:"
        )
        self.push_screen(TextPromptScreen(label, str(self.samples), parse_samples), done)

    def action_attach(self) -> None:
        def done(path: str | None) -> None:
            if path is not None:
                engine = self.engine
                count = (
                    (lambda t: engine.count_tokens([ChatMessage("user", t)])) if engine else None
                )
                self.prompt.attach(path, count)

        self.push_screen(FilePickerScreen(), done)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_follow(self) -> None:
        self.chat.anchor()

    def action_toggle_sidebar(self) -> None:
        if self.sidebar.is_open:
            self.sidebar.set_open(False)
            focus_now(self.prompt)
        else:
            self.sidebar.reveal(self.conversation_id)

    async def action_undo_delete(self) -> None:
        cid = self.sidebar.undo_delete()
        if cid is not None and self.conversation_id is None and not self.chat.busy:
            await self._open_conversation(cid)

    def action_rename_conversation(self) -> None:
        self.sidebar.ask_rename(self.conversation_id)

    def action_delete_conversation(self) -> None:
        self.sidebar.ask_delete(self.conversation_id)
