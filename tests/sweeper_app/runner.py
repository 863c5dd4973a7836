"""Run the tiny app's `-m` command line in this process; returns its exit code and leaves logging as it was."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from unittest import mock

APP = Path(__file__).with_name("app.py")


def sweep(*overrides: str, program: str = str(APP)) -> int:
    from tests.sweeper_app.app import main

    root_logger = logging.getLogger()
    saved = root_logger.level, list(root_logger.handlers)
    try:
        with mock.patch.object(sys, "argv", [program, "-m", *overrides]):
            main()
        return 0
    except SystemExit as exit_:
        return exit_.code
    finally:  # Hydra configured logging for the sweep (file handlers in the job dirs among others)
        for handler in root_logger.handlers:
            if handler not in saved[1]:
                handler.close()
        root_logger.setLevel(saved[0])
        root_logger.handlers[:] = saved[1]
