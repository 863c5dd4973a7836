"""Weights & Biases: offline unless an API key is configured, so it works with no account; never hangs (the
mode's rules: resolved_mode, docs/tracking.md's "W&B never hangs")."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from nlpexp import NlpexpError
from nlpexp import metrics as metric_names
from nlpexp.logger.base import RunLogger
from nlpexp.rules import Name

log = logging.getLogger(__name__)
ENV_MODES = {"offline": "offline", "dryrun": "offline", "disabled": "disabled", "online": "online", "run": "online"}


class WandbLogger(RunLogger):
    def __init__(self, project: Name, dir: Name, mode: Literal["auto", "online", "offline", "disabled"] = "auto",
                 group: Name | None = None, tags: Sequence[Name] = (), entity: Name | None = None,
                 name: Name | None = None):
        # entity: a team or user (None: the API key's default one); name: the run's display name (None: W&B picks one)
        self.dir = Path(dir)
        self.mode = mode
        self.init = {"project": project, "entity": entity, "name": name, "group": group, "tags": list(tags)}
        self.run = None

    def resolved_mode(self) -> str:
        """The mode the run uses: `WANDB_MODE=offline|disabled` in the environment wins over everything, then
        `logger.wandb.mode`; `auto` is online with `WANDB_API_KEY`, else offline. Before going online the server
        (`WANDB_BASE_URL`) is probed: unreachable, `auto` falls back to offline with a warning, `online` fails."""
        env = ENV_MODES.get(os.environ.get("WANDB_MODE", "").strip().lower())
        if env in ("offline", "disabled") or os.environ.get("WANDB_DISABLED", "").lower() in ("true", "1"):
            return env or "disabled"
        mode = env if self.mode == "auto" and env else self.mode
        if mode == "auto":
            mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
        if mode != "online" or (problem := server_problem()) is None:
            return mode
        if self.mode == "online" or env == "online":
            raise NlpexpError(f"logger.wandb: the W&B server is unreachable ({problem}); use logger.wandb.mode="
                              f"offline (then `wandb sync`), or check WANDB_BASE_URL and the network")
        log.warning("logger.wandb: the W&B server is unreachable (%s); logging offline (upload later with "
                    "`wandb sync %s`)", problem, self.dir / "wandb")
        return "offline"

    def start(self, config: Mapping[str, Any]) -> None:
        import wandb

        self.dir.mkdir(parents=True, exist_ok=True)
        # The run id is kept in the run dir so that a resumed run continues the same W&B run.
        id_file = self.dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
        id_file.write_text(run_id)
        self.run = wandb.init(**self.init, dir=str(self.dir), mode=self.resolved_mode(), id=run_id, resume="allow",
                              config=dict(config),
                              # no metadata: it records the command line as typed, secrets and all
                              settings=wandb.Settings(silent=True, x_disable_meta=True, init_timeout=30))

    def record(self, values: Mapping[str, float], step: int) -> None:
        if self.run is not None:
            self.run.log(dict(values), step=step)

    def finish(self, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        if self.run is not None:
            # the final figures under names of their own: W&B's summary keeps each series' last value beside them
            self.run.summary.update(metric_names.tracker_summary(metrics))
            offline, run_dir = self.run.offline, self.run.dir
            self.run.finish()
            self.run = None
            if offline:  # nothing reached W&B yet: say how it gets there
                log.info("W&B run logged offline; upload it with `wandb sync %s`", Path(run_dir).parent)


def server_problem(timeout: float = 5.0) -> str | None:
    """Why the W&B server cannot be reached (a TCP connection within `timeout`), or None when it can."""
    url = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return None
    except OSError as err:
        return f"{url.hostname}:{port}: {err.strerror or err}"
