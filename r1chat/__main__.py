from r1chat.cli import run

run()
