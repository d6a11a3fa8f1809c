"""The log of a benchmark script: each message printed and appended to a file (flushed at once, so
a run cut off by a time limit keeps every line it printed)."""

from __future__ import annotations

from collections.abc import Callable


def appending_log(path: str) -> Callable[[str], None]:
    log_file = open(path, "a")  # noqa: SIM115 (open for the script's whole run)

    def log(message: str) -> None:
        print(message, flush=True)
        log_file.write(message + "\n")
        log_file.flush()

    return log
