"""Glue for the thin rule scripts: send a job's output to its log file."""

from __future__ import annotations

import contextlib
import logging
import sys


@contextlib.contextmanager
def logged(snakemake):
    """Redirect stdout/stderr (and logging) of the script body to the rule's log file."""
    with open(snakemake.log[0], "w") as log:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            logging.basicConfig(stream=log, level=logging.INFO, force=True)
            try:
                yield
            except BaseException:
                import traceback

                traceback.print_exc(file=log)
                raise
            finally:
                sys.stdout.flush()
