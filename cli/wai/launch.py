"""The `wai` command's first code: from here on a stop signal (Ctrl-C, SIGTERM, SIGHUP) is held
until wai can act on it, so one that comes while wai is still starting ends it as one mid-turn
does (the documented exit status, a JSON document under `--json`), never with a traceback or a
silent kill. Nothing heavy is imported before the signals are held."""

from __future__ import annotations

from wai.terminal import stop_signals


def main() -> None:
    stop_signals.hold()
    from wai.app import main as run

    try:
        run()
    finally:
        # A command that never reached the point where stops are acted on (--help, a usage error)
        # still ends as a stop: the user asked for it.
        number = stop_signals.held()
        if number is not None:
            raise SystemExit(128 + number)


if __name__ == "__main__":
    main()
