"""The task group: one class per task, each with setup / train / evaluate."""

from nlpexp.task.base import Task
from nlpexp.task.sbert_nli import SbertNliTask

__all__ = ["SbertNliTask", "Task"]
