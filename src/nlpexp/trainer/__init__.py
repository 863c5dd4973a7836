"""The trainer group: run settings mapped onto the HF TrainingArguments family (nlpexp.trainer.build builds and
trains every trainer; it imports transformers, which this package does not, so that config errors come back in a
second), and release_memory, which frees what a finished run held."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys
import traceback

from nlpexp.trainer.settings import TrainerSettings

__all__ = ["TrainerSettings", "release_memory"]


def release_memory(error: BaseException | None = None) -> None:
    """Free what a finished run held before the next run in the same process (sweep trials share one, issue 20).

    A failed or pruned trial is the costly case: its exception's traceback keeps every frame below the pipeline
    alive, and with them the task, its model, optimizer state and data, for as long as the sweeper keeps the
    exception (measured: +130 MB per failed trial of a 256-wide 2-layer BERT). The finished frames are cleared
    (their code and line numbers stay, so the traceback still prints), then Python, torch and the C heap give back
    what nothing references any more.
    """
    if error is not None and error.__traceback__ is not None:
        # The first frame is the caller's, still running; clear_frames skips it and clears the finished ones.
        traceback.clear_frames(error.__traceback__)
    gc.collect()
    torch = sys.modules.get("torch")  # a run that stopped at its config never imported it: nothing to free
    if torch is not None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()  # blocks the caching allocator kept for tensors that are gone
            torch.cuda.ipc_collect()
        from nlpexp.adapters import reset_accelerator_state

        reset_accelerator_state()
    if (trim := _malloc_trim()) is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim (glibc keeps freed heap pages mapped, resident, until asked); None elsewhere."""
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
