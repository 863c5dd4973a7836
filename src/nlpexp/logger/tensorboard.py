"""TensorBoard: the scalars under nlpexp's metric names (nlpexp.metrics), the run's settings in the HPARAMS tab;
on request seed 000's tags (`seed000_tags`, SEED_000_TAGS) and parameter histograms at each epoch's end
(`histograms`: hundreds of cards), see docs/tracking.md."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from nlpexp import metrics as metric_names
from nlpexp.logger.base import RunLogger
from nlpexp.rules import Int, Name

log = logging.getLogger(__name__)
# trainer log key -> seed 000's tag for it at the step, and for its mean over the epoch at the epoch's end
SEED_000_TAGS = {"loss": "Loss/Train_Batch", "learning_rate": "Learning_Rate", "eval_loss": "Loss/Val_Epoch",
                 "eval_accuracy": "Accuracy/Val_Epoch"}
SEED_000_EPOCH_TAGS = {"loss": "Loss/Train_Epoch", "train_accuracy": "Accuracy/Train_Epoch"}


class TensorBoardLogger(RunLogger):
    def __init__(self, log_dir: Name, histograms: bool = False, serve: bool = False,
                 port: Annotated[int, Int(1, 65535)] = 6006, host: Name = "127.0.0.1", seed000_tags: bool = False):
        self.log_dir = Path(log_dir)
        self.histograms = histograms
        self.seed000_tags = seed000_tags
        self.serve, self.port, self.host = serve, port, host
        self.server = None  # the TensorBoard process started with serve=true
        self._best_checkpoint: str | None = None
        self._writer = None
        self._purge_step: int | None = None
        self._epoch: dict[str, list[float]] = {}  # SEED_000_EPOCH_TAGS' values over the epoch so far

    @property
    def writer(self):
        """Opened at the first write: a resumed run knows its purge step by then (on_train_begin)."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            if self._purge_step is not None:
                # TensorBoard reads a folder's event files in name order, and a name starts with its writer's second:
                # a resumed run's file must sort after the interrupted run's, or its purge and steps come first. A
                # resume within the same second as the last file (a fast test) waits for the next second.
                names = [p.name.split(".") for p in self.log_dir.glob("events.out.tfevents.*")]
                seconds = [int(parts[3]) for parts in names if parts[3:4] and parts[3].isdigit()]
                while seconds and int(time.time()) <= max(seconds):
                    time.sleep(0.05)
            self._writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=self._purge_step)
        return self._writer

    def start(self, config: Mapping[str, Any]) -> None:
        if self.serve:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.server = start_server([self.log_dir], self.port, self.host)

    def record(self, values: Mapping[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def on_save(self, args, state, control, **kwargs):
        """A text note (tab TEXT, tag best_checkpoint) each time the trainer's best checkpoint changes."""
        best = state.best_model_checkpoint
        if best and best != self._best_checkpoint:
            self._best_checkpoint = best
            metric = args.metric_for_best_model
            self.writer.add_text("best_checkpoint", f"new best checkpoint at step {state.global_step}: "
                                 f"eval/{metric} = {state.best_metric:.4f} ({Path(best).name})", state.global_step)
            self.writer.flush()

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step > 0 and self._writer is None:
            # Resumed from checkpoint T: drop what the interrupted run logged after T, keep one continuous log.
            self._purge_step, self._resumed = state.global_step + 1, True

    def on_log(self, args, state, control, logs=None, **kwargs):
        super().on_log(args, state, control, logs)
        logs = logs or {}
        if not self.seed000_tags or "train_runtime" in logs:  # the end-of-training dict: the run's figures
            return
        for key in logs.keys() & SEED_000_TAGS.keys():
            self.writer.add_scalar(SEED_000_TAGS[key], logs[key], state.global_step)
        for key in logs.keys() & SEED_000_EPOCH_TAGS.keys():
            self._epoch.setdefault(key, []).append(logs[key])

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        for key, values in self._epoch.items():
            self.writer.add_scalar(SEED_000_EPOCH_TAGS[key], sum(values) / len(values), step)
        self._epoch = {}
        if self.histograms and model is not None:
            for name, param in model.named_parameters():
                self.writer.add_histogram(f"Parameters/{name}", param.detach().float().cpu(), step)
        if self._writer is not None:
            self.writer.flush()

    def finish(self, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        if metrics:
            self.record_results(metrics)
            # The HPARAMS tab: this run's settings, its columns the final figures just written as scalars (the
            # plugin reads them from this run's own tags: nothing is repeated under `hparam/`).
            values = {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in hparams.items()}
            for part in hparams_summary(values, dict(metric_names.tracker_summary(metrics))):
                self.writer.file_writer.add_summary(part)
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def serve_command(logdirs: list[Path], port: int, host: str) -> list[str]:
    spec = ",".join(f"{Path(d).name}:{d}" for d in logdirs if Path(d).exists()) or str(logdirs[0])
    return [sys.executable, "-m", "tensorboard.main", "--logdir_spec", spec, "--port", str(port), "--host", host]


def start_server(logdirs: list[Path], port: int, host: str = "127.0.0.1"):
    """TensorBoard in the background for a training run (logger.tensorboard.serve=true); it outlives the run so
    that the results stay browsable: its pid is logged, `kill <pid>` stops it. A busy port: one line, no server."""
    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            log.warning("TensorBoard not started: port %d is in use (logger.tensorboard.port=<free port>)", port)
            return None
    server = subprocess.Popen(serve_command(logdirs, port, host), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    log.info("TensorBoard on http://%s:%d (pid %d; `kill %d` stops it)", host, port, server.pid, server.pid)
    return server

