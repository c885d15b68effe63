"""The Textual front end: `r1chat` with no subcommand."""
