"""Command-line sub-apps, registered on the main Typer app in r1chat.cli."""
