"""W&B: the project from WANDB_PROJECT, entity and run-name keys, one key per figure (no `train/train_...`).

A real offline run's name, project and keys: tests/test_trackers.py, in the run that finishes without network."""

from __future__ import annotations

from nlpexp.metrics import from_trainer_log_step as step_values


def test_project_entity_and_name_come_from_the_environment_or_the_keys(compose_run, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    wandb = compose_run("logger=wandb").logger.wandb
    assert (wandb.project, wandb.entity, wandb.name) == ("from-env", None, None)
    wandb = compose_run("logger=wandb", "logger.wandb.entity=my-team", "logger.wandb.name=lr-3e-5",
                        "logger.wandb.project=p").logger.wandb
    assert (wandb.project, wandb.entity, wandb.name) == ("p", "my-team", "lr-3e-5")


def test_trainer_logs_become_single_prefixed_keys():
    assert step_values({"loss": 1.2, "grad_norm": 3.0, "learning_rate": 2e-5, "train_accuracy": 0.5,
                        "epoch": 0.25}) == {"train/loss": 1.2, "train/grad_norm": 3.0, "train/learning_rate": 2e-5,
                                            "train/accuracy": 0.5, "train/epoch": 0.25}
    assert step_values({"eval_spearman_cosine": 0.7, "eval_runtime": 0.1, "epoch": 0.5}) == {
        "eval/spearman_cosine": 0.7}  # an evaluation's epoch is the training log's of the same step
    # the end-of-training dict: its figures reach the summary through the run's metrics instead
    assert step_values({"train_runtime": 1.0, "train_loss": 1.1, "total_flos": 5.0, "epoch": 1.0}) == {}
