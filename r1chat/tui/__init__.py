"""The Textual front end: `r1chat` with no subcommand."""

from r1chat import widewrap

# The thinking pane, the sidebar and every line Textual wraps: Chinese breaks between characters.
widewrap.install(tui=True)
