"""MLflow tracking, isolated here so that nothing else imports mlflow.

One MLflow run per run (a sweep point and seed), found again by its `five.run_key` tag (the run folder): the
train job replaces any earlier run with that key (a rerun never duplicates), the evaluate job adds its metrics to it.
The run's JSON files stay the source of truth; MLflow is for browsing. SQLite may answer "database is
locked" under concurrent jobs: every call is retried with backoff. A tracking failure after retries is
reported as a warning and tracking stops for that job; training itself is never lost to it.
"""

from __future__ import annotations

import fcntl
import math
import os
import random
import re
import shlex
import sys
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from five.base.config import SCHEDULE_SETTINGS, TrainConfig
from five.base.errors import ConfigError, FiveError
from five.base.files import (
    EVAL_JSON,
    FINISHED,
    SUPERSEDED,
    TRAIN_JSON,
    check_evaluated_after_training,
    check_not_in_another_run,
    local_artifact_folder,
    non_regular_kind,
    read_train_record,
    refuse_non_regular,
)
from five.base.metrics import RESULT_COLUMNS, SPLITS, TABLED_SPLIT, read_evaluation

RUN_KEY_TAG = "five.run_key"
SUPERSEDED_TAG = "five.superseded"  # on a run synced from a folder a config edit moved aside (.superseded/<time>)
UNTRACKED_WARNING = "warning: MLflow tracking"  # begins the line a job logs when it goes on untracked
RETRIES = 12
DEFAULT_DATABASE = "mlflow.db"  # under results/; SQLite's journals and the .ready, .init-lock files lie beside it
SQLITE = "sqlite:///"  # the URI prefix of an SQLite database (then its absolute or relative path)
READY_SUFFIX, INIT_LOCK_SUFFIX = ".ready", ".init-lock"  # files beside the database (store_initialisation_lock)
FLUSH_SECONDS = 10.0  # per-epoch metrics are batched: one write per flush, not one per epoch
MLFLOW_DEFAULT_URI = f"{SQLITE}{DEFAULT_DATABASE}"  # MLflow 3's own store where no URI is set: in the working folder


def default_tracking_uri(results_dir: Path) -> str:
    """The embedded default: SQLite under results/ (MLflow's file store is deprecated)."""
    return f"{SQLITE}{Path(results_dir).resolve() / DEFAULT_DATABASE}"


def export_tracking_uri(configured: str | None, results_dir: Path, runs: Iterable[Path] = ()) -> str:
    """The workflow's tracking URI: the config key, else $MLFLOW_TRACKING_URI, else SQLite under results/, checked
    as a store for the sweep's `runs`. Exported to the environment, which jobs inherit, so switching servers
    retrains nothing."""
    if configured:
        uri, what = configured, "tracking_uri"
    elif environment_tracking_uri():
        uri, what = environment_tracking_uri(), "MLFLOW_TRACKING_URI"
    else:
        uri, what = default_tracking_uri(results_dir), "the tracking database"
    check_tracking_store(uri, what, runs)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


def environment_tracking_uri() -> str | None:
    return os.environ.get("MLFLOW_TRACKING_URI") or None  # set but empty is unset, as for MLflow


def store_uri(tracking_uri: str | None = None) -> str:
    """The store five logs to: `tracking_uri`, else $MLFLOW_TRACKING_URI's, else ./mlflow.db, always named to MLflow
    (left to itself, MLflow would use the file store where a ./mlruns folder holds experiments)."""
    return tracking_uri or environment_tracking_uri() or MLFLOW_DEFAULT_URI


def store_in_use() -> str:
    """The store a command run by hand logs to, as a line: $MLFLOW_TRACKING_URI's, else MLflow's default in the
    working folder (not the workflow's results/mlflow.db unless that is the URI)."""
    uri = environment_tracking_uri()
    if uri:
        return f"MLflow store: {uri} ($MLFLOW_TRACKING_URI)"
    return f"MLflow store: {MLFLOW_DEFAULT_URI}, MLflow's default in the working folder ($MLFLOW_TRACKING_URI is unset)"


def browse_command(uri: str) -> str:
    """How to look at the runs of the store at `uri`: a server is opened in a browser (`mlflow ui` serves only a
    database), a database through `mlflow ui`."""
    if uri.split("://", 1)[0] in ("http", "https") or uri.startswith("databricks"):
        return f"open {uri} in a browser"
    return f"mlflow ui --backend-store-uri {shlex.quote(uri)}"


def sync_command(uri: str, experiment: str, run_folders: str) -> str:
    """The shell line that logs the runs of `experiment` the store at `uri` missed: the store named (a command run
    by hand does not know the workflow's), this Python's five (the workflow's, on the PATH or not), and the
    glob `run_folders` of the experiment's run folders, left for the shell to expand."""
    return (
        f"MLFLOW_TRACKING_URI={shlex.quote(uri)} {shlex.quote(sys.executable)} -m five.cli mlflow-sync "
        f"--experiment {shlex.quote(experiment)} {run_folders}"
    )


def check_tracking_store(uri: str | None, what: str, runs: Iterable[Path] = ()) -> None:
    """A store MLflow can serve runs from (check_tracking_uri; None: MLflow's default ./mlflow.db), whose SQLite
    database lies outside every run's folder, the `runs` to be made included: it and the journals SQLite keeps
    beside it would lie among a run's files."""
    check_tracking_uri(uri, what)
    database = sqlite_database(store_uri(uri))
    if database is not None:
        check_not_in_another_run(None, database, database, "the tracking database", planned=runs)


SQLITE_HEADER = b"SQLite format 3\x00"  # the first bytes of every SQLite database file
TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks", "databricks-uc")


def check_tracking_uri(uri: str | None, what: str = "tracking_uri") -> None:
    """A tracking URI MLflow can serve the sweep from: a database or a server (its file store, also what a
    bare path means, is in maintenance mode). `what`: where the URI was given."""
    if uri is None:
        return
    if any(ord(character) < 32 or ord(character) == 127 for character in uri):
        raise ConfigError(
            f"{what} {uri!r} holds a control character (a newline?), which no database or server name has"
        )
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else uri if uri.startswith("databricks") else ""
    if scheme in ("", "file"):
        raise ConfigError(
            f"{what} {uri!r} is MLflow's file store (in maintenance mode, and not safe for "
            "concurrent jobs): use a database, e.g. sqlite:///ABSOLUTE/PATH/mlflow.db, or a server "
            "(http://HOST:PORT)"
        )
    if scheme not in TRACKING_SCHEMES:
        raise ConfigError(
            f"{what} {uri!r} has the unknown scheme {scheme!r} (use one of {', '.join(TRACKING_SCHEMES)})"
        )
    if scheme in ("http", "https") and not server_host(uri):
        raise ConfigError(f"{what} {uri!r} names no server (no host or a malformed one): use http://HOST:PORT")
    if scheme in SQL_SERVER_SCHEMES:
        check_database_driver(uri, what)
    if scheme == "sqlite" and sqlite_database(uri) is None:
        raise ConfigError(
            f"{what} {uri!r} names no database file (an in-memory database keeps nothing): use "
            "sqlite:///ABSOLUTE/PATH/mlflow.db"
        )
    check_sqlite_files(uri, what)


SQL_SERVER_SCHEMES = ("postgresql", "mysql", "mssql")  # served through SQLAlchemy and a driver of their own


def check_database_driver(uri: str, what: str) -> None:
    """A database server's URI that SQLAlchemy reads and whose driver is installed: without it MLflow fails at
    every job, which then goes on untracked as if the server were down."""
    from sqlalchemy.engine.url import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        dialect = make_url(uri).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        reason = " ".join(str(error).split())
        raise ConfigError(f"{what} {uri!r} is no database URL SQLAlchemy reads ({reason})") from None
    try:
        dialect.import_dbapi()
    except ImportError as error:
        raise ConfigError(
            f"{what} {uri!r} needs the database driver {error.name!r}, which is not installed here: install it"
        ) from None


def server_host(uri: str) -> str | None:
    """The host of a server's URI; None where it names none or cannot be parsed (an unclosed IPv6 bracket)."""
    try:
        return urlparse(uri).hostname
    except ValueError:
        return None


def check_sqlite_files(uri: str, what: str) -> None:
    """Before anything opens it: SQLite writes its pages and journals onto whatever the database path names,
    a device too (sqlite:////dev/null), and retries a folder or FIFO for minutes."""
    for path in sqlite_database_files(uri):
        kind = non_regular_kind(path)
        if kind is not None:
            raise ConfigError(f"{what} {uri!r}: {path} is {kind}; the SQLite database and its files must be regular")
    database = sqlite_database(uri)
    if database is not None and database.is_file() and database.stat().st_size > 0:
        try:
            with open(database, "rb") as file:
                header = file.read(len(SQLITE_HEADER))
        except OSError as error:
            raise ConfigError(f"{what} {uri!r}: {database} cannot be read ({error.strerror})") from None
        if header != SQLITE_HEADER:  # an empty file is a new database to SQLite
            raise ConfigError(f"{what} {uri!r}: {database} is not an SQLite database; name another file")


# A tracking server that is down must not hold a job for minutes (MLflow's own default is 7 retries with
# exponential backoff): a few quick tries, then the job goes on untracked. A user's own settings win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


def _client(tracking_uri: str | None):
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from mlflow.tracking import MlflowClient

    return MlflowClient(store_uri(tracking_uri))


def with_retries(call: Callable, *args, **kwargs):
    """Run an MLflow call, retrying while SQLite reports a lock held by a concurrent job."""
    for attempt in range(RETRIES):
        try:
            return call(*args, **kwargs)
        except Exception as error:  # MLflow wraps SQLAlchemy's OperationalError in its own exception types
            if "database is locked" not in str(error) or attempt == RETRIES - 1:
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))


def sqlite_database(tracking_uri: str | None) -> Path | None:
    """The SQLite database file `tracking_uri` names (sqlite:///PATH, also with a driver: sqlite+pysqlite:///);
    None for a server, no URI, or an SQLite database in memory."""
    match = re.fullmatch(r"sqlite(\+\w+)?:///([^?]*)(\?.*)?", tracking_uri or "", re.DOTALL)  # ?timeout=…: options
    return Path(match.group(2)) if match and match.group(2) not in ("", ":memory:") else None


def sqlite_database_files(tracking_uri: str | None) -> list[Path]:
    """The SQLite database of `tracking_uri` and the files kept beside it (SQLite's journals, five's ready mark
    and initialisation lock); none for a server."""
    database = sqlite_database(tracking_uri)
    if database is None:
        return []
    suffixes = ("-journal", "-wal", "-shm", READY_SUFFIX, INIT_LOCK_SUFFIX)
    return [database] + [database.with_name(database.name + suffix) for suffix in suffixes]


@contextmanager
def store_initialisation_lock(tracking_uri: str | None):
    """Jobs that start together on a new SQLite store would all create its tables (MLflow's migrations are not
    safe against each other): until a job has created the store and the experiment (and left a `.ready` file
    beside the database), jobs take turns under a lock file; afterwards they pass straight through (holding
    it costs a second per job). Servers handle their own concurrency."""
    database = sqlite_database(tracking_uri)
    if database is None:
        yield
        return
    ready = database.with_name(database.name + READY_SUFFIX)
    if ready.is_file():
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    lock = database.with_name(database.name + INIT_LOCK_SUFFIX)
    for path in (lock, ready):
        refuse_non_regular(path)  # a FIFO there would block every job
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
        ready.touch()


def run_key(run_dir: Path) -> str:
    """A run's MLflow identity: the absolute path of its run folder, so that two checkouts sharing one tracking
    server and experiment never replace each other's runs. The job finds it, never the workflow's parameters
    (a moved or copied checkout would otherwise rerun every job)."""
    return str(Path(run_dir).resolve())


def ensure_experiment(
    name: str, tracking_uri: str | None = None, artifact_location: str | None = None, client=None, warn=None
) -> str:
    """The experiment's id, created if it does not exist. Jobs of one sweep may race to create it: the loser
    finds the winner's. `warn` is told once where it exists with its artifacts in another local folder than
    `artifact_location`, which MLflow then ignores."""
    client = client or _client(tracking_uri)
    experiment = with_retries(client.get_experiment_by_name, name)
    if experiment is not None:
        if warn is not None:
            warn_of_other_artifact_folder(experiment, artifact_location, warn)
        return experiment.experiment_id
    try:
        return with_retries(client.create_experiment, name, artifact_location=artifact_location)
    except Exception:
        experiment = with_retries(client.get_experiment_by_name, name)
        if experiment is None:
            raise
        return experiment.experiment_id


WARNED_ARTIFACT_FOLDERS: set[Path] = set()  # one line a job, not one a run


def warn_of_other_artifact_folder(experiment, artifact_location: str | None, warn: Callable[[str], None]) -> None:
    """An experiment keeps the artifact folder it was created with: a checkout copied or moved with its store, or
    a second checkout on a shared one, writes its runs' artifacts into the first's folder."""
    kept, asked = local_artifact_folder(experiment.artifact_location), local_artifact_folder(artifact_location)
    if kept is None or asked is None or kept.resolve() == asked.resolve() or kept in WARNED_ARTIFACT_FOLDERS:
        return
    WARNED_ARTIFACT_FOLDERS.add(kept)
    warn(
        f"note: the MLflow experiment {experiment.name!r} keeps its artifacts in {kept}, the folder it was created "
        f"with (MLflow keeps it), not in {asked}: this job's go there too"
    )


class RunTracker:
    """Logs one sweep point's params, per-epoch and final metrics, and artifacts."""

    def __init__(
        self,
        experiment: str,
        run_key: str,
        tracking_uri: str | None = None,
        warn: Callable[[str], None] = print,
        artifact_location: str | None = None,
    ):
        import mlflow.tracking  # noqa: F401 - seconds of imports, outside the lock that jobs queue for

        with store_initialisation_lock(store_uri(tracking_uri)):
            self.client = _client(tracking_uri)
            self.experiment_id = ensure_experiment(
                experiment, artifact_location=artifact_location, client=self.client, warn=warn
            )
        self.run_key, self.warn = run_key, warn
        self.run_id: str | None = None
        self.pending: list = []
        self.last_flush = time.monotonic()

    def _runs_with_key(self):
        # a run key is a path, which may hold quotes that MLflow's filter syntax cannot escape: a LIKE pattern
        # with '_' (any one character) in place of each quote and backslash, then the exact key here
        pattern = "".join("_" if character in "'\"\\" else character for character in self.run_key)
        query = f"tags.`{RUN_KEY_TAG}` LIKE '{pattern}'"
        runs = with_retries(self.client.search_runs, [self.experiment_id], filter_string=query)
        return [run for run in runs if run.data.tags.get(RUN_KEY_TAG) == self.run_key]

    def _guard(self, action: Callable[[], None]) -> None:
        if self.run_id is None:
            return
        try:
            action()
        except Exception as error:
            self.untracked(error)

    def untracked(self, error: Exception) -> None:
        self.warn(
            f"{UNTRACKED_WARNING} failed ({' '.join(str(error).split())[:300]}); the run continues "
            "untracked, its JSON files are unaffected (`five mlflow-sync` logs it later)"
        )
        self.run_id = None

    def start(self, params: dict, tags: dict | None = None) -> None:
        """Replace any earlier MLflow run of this sweep point with a fresh one (untracked, with one warning,
        if the tracking store cannot be reached)."""
        try:
            self._start(params, tags)
        except Exception as error:
            self.untracked(error)

    def _start(self, params: dict, tags: dict | None) -> None:
        from mlflow.entities import Param

        earlier = self._runs_with_key()
        run = with_retries(
            self.client.create_run,
            self.experiment_id,
            run_name=self.run_key,
            tags={RUN_KEY_TAG: self.run_key, **(tags or {})},
        )
        self.run_id = run.info.run_id
        for old in earlier:  # only once the new run exists, and only this sweep point's own runs
            with_retries(self.client.delete_run, old.info.run_id)
        values = [Param(key, str(value)) for key, value in params.items()]
        self._guard(lambda: with_retries(self.client.log_batch, self.run_id, params=values))

    def attach(self) -> dict[str, float]:
        """Continue the MLflow run of this sweep point (the evaluate job), or start one if there is none; returns
        the metrics it holds (an earlier evaluation's among them)."""
        try:
            runs = self._runs_with_key()
        except Exception as error:
            self.untracked(error)
            return {}
        if not runs:
            self.start({})
            return {}
        self.run_id = runs[0].info.run_id
        return dict(runs[0].data.metrics)

    def is_complete(self, record: dict, evaluation: dict | None = None) -> bool:
        """Whether MLflow already holds this sweep point's run as train.json's `record` (and eval.json's
        `evaluation`, where given) have it: ended, with the record's settings (an edited schedule recorded anew
        changes them), the end of its training (its wall time, or a loss for a diverged run) and the evaluation's
        results (an evaluation made again while the store was down may change them). An evaluate job that
        attached to a run whose training was never logged leaves an incomplete one."""
        expected = {} if record["status"] == "diverged" else {"train_wall_time_s": record["wall_time_s"]}
        if evaluation is not None:  # its results, not the facts of the job that made it (its wall time)
            results = {key: value for key, value in evaluation.items() if key in (*RESULT_COLUMNS, "split")}
            expected |= loggable(evaluation_metrics(results))
        for run in self._runs_with_key():
            metrics, params = run.data.metrics, run.data.params
            outdated = outdated_evaluation_metrics(metrics, evaluation) if evaluation is not None else {}
            if (
                run.info.status in ("FINISHED", "FAILED")
                and all(math.isnan(metrics[key]) for key in outdated)
                and all(params.get(key) == str(value) for key, value in record["config"].items())
                and (record["status"] != "diverged" or "loss" in metrics)
                and all(key in metrics and same_number(metrics[key], value) for key, value in expected.items())
            ):
                return True
        return False

    def log_metrics(self, metrics: dict, step: int | None = None, flush: bool = True) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(key, value, now, step or 0) for key, value in loggable(metrics).items()]
        if flush or time.monotonic() - self.last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        self.last_flush = time.monotonic()
        for start in range(0, len(batch), 900):  # MLflow accepts at most 1000 metrics per batch
            self._guard(lambda: with_retries(self.client.log_batch, self.run_id, metrics=batch[start : start + 900]))

    def log_artifacts(self, paths) -> None:
        for path in paths:
            if Path(path).is_file():
                self._guard(lambda: with_retries(self.client.log_artifact, self.run_id, str(path)))

    def finish(self, status: str = "FINISHED") -> None:
        self.flush()
        self._guard(lambda: with_retries(self.client.set_terminated, self.run_id, status))


def check_evaluated_this_configuration(run_dir: Path, record: dict, evaluation: dict) -> None:
    """An eval.json is logged as its run's only where it evaluated weights trained with the run's settings (when
    a run validates or stops aside): one copied from another run would put its numbers under this one's tags."""
    trained, evaluated = (TrainConfig.resolved(stored.get("config") or {}) for stored in (record, evaluation))
    differing = [key for key in trained if key not in SCHEDULE_SETTINGS and evaluated.get(key) != trained[key]]
    if differing and evaluation.get("status") != "diverged":
        key = differing[0]
        raise FiveError(
            f"{run_dir}: eval.json evaluated weights trained with {key} = {evaluated.get(key, '(none)')!r}, but "
            f"train.json says {trained[key]!r}: evaluate the run again"
        )


def evaluation_metrics(evaluation: dict) -> dict:
    """An evaluation's numbers as the run's MLflow metrics: eval_<name> for the split the tables report, else
    eval_<split>_<name> (a hand-run evaluation of another split never passes for the test numbers)."""
    prefix = evaluation_prefix(evaluation.get("split", TABLED_SPLIT))
    return {f"{prefix}{key}": value for key, value in evaluation.items()}


def evaluation_prefix(split: str) -> str:
    return "eval_" if split == TABLED_SPLIT else f"eval_{split}_"


def outdated_evaluation_metrics(held: dict, evaluation: dict) -> dict[str, float]:
    """NaN for each metric of the evaluation's split that its MLflow run holds from an earlier evaluation and this
    one lacks (FIF's nll_nats_own_sigma once `sigma` went from fitted to own): MLflow cannot delete a metric, and
    its last value would pass for this evaluation's."""
    prefix = evaluation_prefix(evaluation.get("split", TABLED_SPLIT))
    # the tabled split's prefix, eval_, begins every other split's too: their keys are not this evaluation's
    other_splits = tuple(
        other for other in map(evaluation_prefix, SPLITS) if other != prefix and other.startswith(prefix)
    )
    fresh = loggable(evaluation_metrics(evaluation))
    return {
        key: math.nan
        for key in held
        if key.startswith(prefix) and not key.startswith(other_splits) and key not in fresh
    }


def sync_inputs(run_dir: Path, experiment: str) -> tuple[dict, dict | None] | str:
    """A run folder's train.json and eval.json (None where not evaluated), read and checked before anything is
    logged to `experiment` (a run trained for another experiment is refused); or why the folder is skipped."""
    record_path, evaluation_path = Path(run_dir) / TRAIN_JSON, Path(run_dir) / EVAL_JSON
    if not record_path.exists():
        return "not trained"
    record = read_train_record(record_path)
    trained_for = record.get("mlflow_experiment")  # None: trained untracked, or before five recorded it
    if trained_for is not None and trained_for != experiment:
        raise FiveError(
            f"{run_dir} was trained for the MLflow experiment {trained_for!r}, not {experiment!r}: sync it to its "
            "own experiment"
        )
    if record.get("status") not in FINISHED:  # training or killed: its job logs it
        return f"skipped: training has not ended (status {record.get('status')})"
    evaluation = read_evaluation(evaluation_path) if evaluation_path.exists() else None
    if evaluation is not None:
        check_evaluated_after_training(run_dir, record, evaluation)
        check_evaluated_this_configuration(run_dir, record, evaluation)
    return record, evaluation


def log_record(
    tracker: RunTracker, run_dir: Path, record: dict, evaluation: dict | None = None, tags: dict | None = None
) -> None:
    """A finished run's train.json record (and its evaluation) as its sweep point's MLflow run, replacing any
    earlier one: params, per-epoch history, the training's end, the JSON files as artifacts."""
    tracker.start(
        record["config"] | {"device": record.get("device")},
        tags={"model": record["config"]["model"], "dataset": record["config"]["dataset"]} | (tags or {}),
    )
    for entry in record["history"]:
        tracker.log_metrics(
            {key: value for key, value in entry.items() if key != "epoch"}, step=entry["epoch"], flush=False
        )
    tracker.log_metrics({"train_wall_time_s": record["wall_time_s"]})
    if evaluation is not None:
        tracker.log_metrics(evaluation_metrics(evaluation))
    tracker.log_artifacts([Path(run_dir) / TRAIN_JSON] + ([Path(run_dir) / EVAL_JSON] if evaluation else []))
    tracker.finish("FAILED" if record["status"] == "diverged" else "FINISHED")


def loggable(metrics: dict) -> dict[str, float]:
    """The numbers among `metrics`, as MLflow keeps them (floats; flags and texts are no metrics)."""
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def same_number(logged: float, value: float) -> bool:
    return logged == value or (math.isnan(logged) and math.isnan(value))


def sync_run(
    experiment: str, run_dir: Path, artifact_location: str | None = None, warn: Callable[[str], None] = print
) -> str:
    """Log a finished run folder to MLflow from its JSON files (params, per-epoch history, evaluation, the JSON
    files as artifacts) unless MLflow already holds it: for runs trained while the tracking server was down.
    Returns what was done. A run a config edit moved aside (.superseded/<time>) is tagged as such: it is no
    sweep point's current run."""
    run_dir = Path(run_dir).resolve()
    superseded = run_dir.parent.name == SUPERSEDED  # as move_aside lays it out: run/.superseded/<time>/
    inputs = sync_inputs(run_dir, experiment)
    if isinstance(inputs, str):
        return inputs
    record, evaluation = inputs
    tracker = RunTracker(experiment, run_key(run_dir), warn=warn, artifact_location=artifact_location)
    if tracker.is_complete(record, evaluation):
        return "already in MLflow"
    log_record(tracker, run_dir, record, evaluation, {SUPERSEDED_TAG: "true"} if superseded else {})
    if tracker.run_id is None:
        return "not logged (tracking failed)"
    return f"logged (a superseded run, tagged {SUPERSEDED_TAG})" if superseded else "logged"
