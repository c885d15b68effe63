"""The `r1chat` command: the process made sane, then the command line (r1chat.cli)."""

from __future__ import annotations

import contextlib
import os
import sys


def main() -> None:
    try:
        from r1chat.interrupts import quiet_termination

        quiet_termination()
        sys.exit(_run())
    except KeyboardInterrupt:  # Ctrl+C before quiet_termination took the signals
        # CPython marks a KeyboardInterrupt that an import saw as unhandled and, after a normal
        # exit, kills the process with SIGINT itself (status -2, not 130). Nothing is open yet
        # that finalizing would close: leave at once with 130.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.write("\n")
            sys.stderr.flush()
            sys.stdout.flush()
        os._exit(130)
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except BaseException as e:
        from r1chat.interrupts import Interrupted

        if isinstance(e, Interrupted):
            _quiet_exit(e.exit_code)
        raise


def _run() -> int:
    import typer
    from typer.exceptions import TyperException

    from r1chat.commands.errors import say_error
    from r1chat.commands.process import check_arguments, plug_standard_streams
    from r1chat.errors import R1ChatError

    plug_standard_streams()
    try:
        check_arguments(sys.argv)
    except R1ChatError as e:
        say_error(str(e))
        return e.exit_code
    from r1chat.cli import app

    try:
        code = app(standalone_mode=False)
    except TyperException as e:  # a usage error: Click's own report takes four lines
        ctx = getattr(e, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        say_error(f"{e.format_message()}{where}")
        return int(getattr(e, "exit_code", 2))
    except typer.Abort:
        return 1
    return code if isinstance(code, int) else 0


def _quiet_exit(code: int) -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.write("\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
