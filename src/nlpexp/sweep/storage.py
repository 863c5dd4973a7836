"""Where a study is stored: an SQL database (SQLite by default, PostgreSQL to share), or a journal file on NFS.
Every storage opened here redacts each study or trial attribute as it is written, whoever writes it.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend

from nlpexp import NlpexpError, first_line
from nlpexp.redaction import redact

SQLITE_FILE = "optuna.db"
JOURNAL_SCHEME = "journal://"


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 max_retry: int | None = None, read_only: bool = False) -> BaseStorage:
    """An RDB storage; with a heartbeat, trials silent for grace_period are failed and queued again.
    `journal:///<file>`: Optuna's JournalStorage on a file shared by several machines (NFS), no heartbeat (see
    docs/scaling.md). SQLite writers wait up to a minute for the lock; creating the tables races between processes
    starting together, so it is retried. `read_only` (summary, dashboard): nothing is created; the journal or SQLite
    file must be there (opening would create an empty one, and its folders); other databases are the server's."""
    if url.startswith(JOURNAL_SCHEME):
        path = Path(url.removeprefix(JOURNAL_SCHEME))
        if not path.is_absolute():
            raise NlpexpError(f"a journal storage needs an absolute path (journal:///shared/dir/study.log), got {url}")
        if read_only:
            _check_file(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # replays the file: one that is not an Optuna journal fails here
            return RedactedJournalStorage(JournalFileBackend(str(path)))  # (its symlink lock works on NFS)
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as err:
            raise NlpexpError(f"{path} is not an Optuna journal file ({type(err).__name__}: {first_line(err)}); "
                              f"give the journal a sweep wrote, or a sweep dir") from err
    if read_only:
        parsed = _parsed(url, f"{url} is not a storage URL")
        if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
            _check_file(Path(parsed.database))  # and opened read-only: a handed study.json may name any SQLite file
            url = f"sqlite:///file:{Path(parsed.database).resolve()}?mode=ro&uri=true"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        heartbeat = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
                     "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry)}
        for attempt in range(3):
            try:
                return RedactedRDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith(
                    "sqlite") else {}, **(heartbeat if heartbeat_interval else {}))
            except Exception as err:  # sqlalchemy errors while another process creates the same tables
                if attempt == 2:
                    raise NlpexpError(f"cannot open the study storage {url}: {first_line(err)}") from err
                time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


class _RedactedAttrs:
    """Mixed into a storage class: every attribute value is redacted before it is stored (a key that names a
    secret, `db_password`, keeps its key and loses its value; a secret's value anywhere in it is replaced)."""

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        super().set_study_user_attr(study_id, key, _redacted(key, value))

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        super().set_study_system_attr(study_id, key, _redacted(key, value))

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_user_attr(trial_id, key, _redacted(key, value))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_system_attr(trial_id, key, _redacted(key, value))


def _redacted(key: str, value: Any) -> Any:
    return redact({key: value})[key]


class RedactedRDBStorage(_RedactedAttrs, RDBStorage):
    pass


class RedactedJournalStorage(_RedactedAttrs, JournalStorage):
    pass


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise NlpexpError(f"no study storage at {path} ({'a folder' if path.is_dir() else 'missing'}): give a "
                          f"sweep dir or the URL of a storage a sweep wrote")


def check_storage_url(url: str | None) -> None:
    """hydra.sweeper.storage: a URL, and none with a password, which would be written to study.json and to every
    trial's .hydra/ files."""
    if url is None or url.startswith(JOURNAL_SCHEME):
        return
    if _parsed(url, f"hydra.sweeper.storage must be an SQLAlchemy URL or a journal, got '{url}'").password:
        raise NlpexpError("hydra.sweeper.storage holds a password, which would be written to study.json and every "
                          "trial's config: leave it out of the URL and export it (PGPASSWORD for PostgreSQL) or "
                          "put it in ~/.pgpass")


def _parsed(url: str, problem: str):
    from sqlalchemy.engine import make_url

    try:
        return make_url(url)
    except Exception as err:  # noqa: BLE001 (sqlalchemy's ArgumentError and kin: not a URL at all)
        raise NlpexpError(f"{problem} (sqlite:///<file>, journal:///<file>, postgresql://...): "
                          f"{first_line(err)}") from err


def sqlite_url(sweep_dir: Path) -> str:
    return f"sqlite:///{Path(sweep_dir).resolve() / SQLITE_FILE}"
