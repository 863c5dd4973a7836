"""Weights & Biases: offline unless an API key is configured, so it works with no account."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nlpexp import metrics as metric_names
from nlpexp.logger.base import RunLogger

MODES = ("auto", "online", "offline", "disabled")


class WandbLogger(RunLogger):
    def __init__(self, project: str, dir: str, mode: str = "auto", group: str | None = None,
                 tags: Sequence[str] = ()):
        from nlpexp.errors import NlpexpError

        if mode not in MODES:
            raise NlpexpError(f"logger.wandb.mode must be one of {MODES}, got {mode!r}")
        self.project = project
        self.dir = Path(dir)
        self.mode = mode
        self.group = group
        self.tags = list(tags)
        self.run = None

    def resolved_mode(self) -> str:
        if self.mode != "auto":
            return self.mode
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"

    def start(self, config: Mapping[str, Any]) -> None:
        import wandb

        self.dir.mkdir(parents=True, exist_ok=True)
        # The run id is kept in the run dir so that a resumed run continues the same W&B run.
        id_file = self.dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
        id_file.write_text(run_id)
        self.run = wandb.init(project=self.project, dir=str(self.dir), mode=self.resolved_mode(), id=run_id,
                              resume="allow", group=self.group, tags=self.tags, config=dict(config),
                              settings=wandb.Settings(silent=True))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run is None or not logs:
            return
        values = metric_names.from_trainer_logs(logs, "val")
        values.update({f"train/{k}": v for k, v in logs.items()
                       if not k.startswith("eval_") and isinstance(v, int | float)})
        self.run.log(values, step=state.global_step)

    def finish(self, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        if self.run is not None:
            self.run.summary.update(dict(metrics))
            self.run.finish()
            self.run = None
