"""nlpexp entry point: `python run.py task=sbert_nli model=minilm ...`; add -m to sweep."""

import os
import sys
from pathlib import Path

# The checkout this run.py belongs to holds conf/ and experiments/ (nlpexp.paths.project_root()): so that a
# non-editable install (pip install ., a wheel, which carry no conf/) runs this checkout's configs as well.
os.environ.setdefault("NLPEXP_ROOT", str(Path(__file__).resolve().parent))

import hydra
from omegaconf import DictConfig

from nlpexp.boundary import exit_on_error, job_errors
from nlpexp.components import allowlist
from nlpexp.config import CONFIG_DIR
from nlpexp.gate import check_command_line
from nlpexp.redaction import redact_output


# Hydra builds launchers, sweepers, callbacks and logging handlers under the same allow-list as nlpexp does
# (nlpexp's own components, those installed packages declare, those NLPEXP_TRUST_TARGETS names).
@hydra.main(config_path=str(CONFIG_DIR), config_name="config", execution_whitelist=allowlist())
def main(cfg: DictConfig) -> float:
    from nlpexp.pipeline import objective, run

    with job_errors(cfg):  # one `error:` line; a sweep's trial re-raises so that the sweeper records it
        return objective(cfg, run(cfg))


def _security_gate(argv: list[str]) -> None:
    check_command_line(argv, __file__, str(CONFIG_DIR), "config")  # nothing is built before it


if __name__ == "__main__":
    # `--help` / `-h` (an override is `key=value`, never one of them); not argparse, whose errors would echo the
    # arguments to the console before the redaction below is installed.
    wants_help = any(arg in ("-h", "--help") for arg in sys.argv[1:])
    # One console for the process: secrets never reach it (errors included), a closed pipe ends it quietly; the
    # usage text is not redacted (its `KEY=value` examples would be).
    redact_output(redacting=not wants_help)
    if wants_help:
        from nlpexp.help import help_text

        print(help_text())
        sys.exit(0)
    exit_on_error(main, sys.argv[1:], before=[_security_gate])  # Hydra's own errors as one line too
