"""A run folder's files and how five writes them: atomically (a temp file in the same folder, fsync, then a rename
over the target, so a killed job leaves either the old file or the new one, never a half-written one), only
onto regular files, and checked before any compute. Free of torch: the workflow's parse-time and table code
import it."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from five.base.errors import FiveError, one_line

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"  # the weights of the epoch with the best validation NLL
TRAIN_JSON = "train.json"
DATA_FINGERPRINT = "data_sha256"  # train.json's hash of a user's npz contents (five.data.datasets.contents_hash)
FINISHED = ("complete", "stalled", "diverged")  # train.json statuses of a run that stopped (else "running")
EVAL_JSON = "eval.json"
LOCK_NAME = ".lock"
RUN_OWN_FILES = (CHECKPOINT_NAME, BEST_NAME, TRAIN_JSON, LOCK_NAME)  # what a training run alone writes
SUPERSEDED = ".superseded"  # where a run folder's files go when its configuration changed
GRIDS = "grids"  # the folder of a run's image grids in the workflow (`five evaluate --image-dir RUN/grids`)
IMAGE_NAMES = ("reconstructions.png", "samples.png")  # the grids `five evaluate --image-dir` writes
MOVE_ASIDE_ADVICE = "move the run folder aside (or delete it) to retrain"
# a damaged evaluation needs no retraining: only the evaluation is made again
EVALUATE_AGAIN_ADVICE = "remove it and evaluate the run again (in the workflow: snakemake --forcerun evaluate)"


def repair_advice(path: Path) -> str:
    """What to do about a damaged file of a run folder: evaluate again for eval.json, else retrain."""
    return EVALUATE_AGAIN_ADVICE if Path(path).name == EVAL_JSON else MOVE_ASIDE_ADVICE


NAME_MAX = 255  # bytes of one name in a path on Linux's file systems
PATH_MAX = 4096  # bytes of a whole path
TEMPORARY_EXTRA = len(".") + len(".XXXXXXXX.tmp")  # what atomic_write's temporary file adds to a name
NAME_LIMIT = NAME_MAX - TEMPORARY_EXTRA
PATH_LIMIT = PATH_MAX - NAME_MAX  # room for the files five makes inside a folder it is given


def path_problem(path: Path) -> str | None:
    """Why `path` cannot name a file five reads or writes (a NUL byte or another character no file name can
    hold, a name or path too long for five's files and their temporaries, a link loop), as the rest of a
    sentence that begins with the path; None where it can."""
    text = str(path)
    if "\0" in text:
        return "holds a NUL byte, which no file name can"
    try:
        encoded = os.fsencode(text)
    except UnicodeEncodeError:
        return "holds a character no file name can (a lone surrogate)"
    if not one_line(text):
        return "holds a control character (a newline or escape), which five takes in no path"
    if len(encoded) > PATH_LIMIT:
        return f"is {len(encoded):,} bytes long; five takes paths of at most {PATH_LIMIT:,} (room for its files)"
    longest = max(len(name) for name in encoded.split(b"/"))
    if longest > NAME_LIMIT:
        return (
            f"holds a name of {longest:,} bytes; five takes names of at most {NAME_LIMIT} (the file system's "
            f"{NAME_MAX}, less what its temporary files add)"
        )
    try:
        os.stat(path)
    except OSError as error:  # nothing there, or a folder on the way that is a file: for the caller to say
        if error.errno == errno.ELOOP:
            return "runs through a link loop"
    return None


def shown_path(path: Path) -> str:
    """`path` for a one-line message: a very long one cut in the middle, one with control characters escaped."""
    text = str(path) if one_line(str(path)) else ascii(str(path))
    return text if len(text) <= 120 else f"{text[:60]}…{text[-40:]}"


def check_path(path: Path, what: str = "") -> None:
    problem = path_problem(path)
    if problem is not None:
        raise FiveError(f"{what + ' ' if what else ''}{shown_path(path)} {problem}")


def non_regular_kind(path: Path) -> str | None:
    """What `path` is where it is there but not a regular file ("a folder", "a FIFO", …); None where it is a
    regular file or nothing."""
    path = Path(path)
    try:  # one stat: a journal that SQLite makes and removes between two checks is never misread
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there (or a file on the way: the caller says so)
        return "a link to nothing" if path.is_symlink() else None
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the name
        if getattr(error, "errno", None) == errno.ELOOP:
            return "a link loop"
        check_path(path)  # a name too long or a NUL byte, said in one line
        raise
    if stat.S_ISREG(mode):
        return None
    return (
        "a folder"
        if stat.S_ISDIR(mode)
        else "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "not a regular file"
    )


def refuse_non_regular(path: Path, what: str = "") -> None:
    """Never write over anything but a regular file: a device (as root, `--out /dev/null` would become a regular
    file), a FIFO, a socket, a folder or a link is refused in one line. A link even to a regular file: the
    rename of an atomic write replaces the link itself (`--out /dev/stdout` made /dev/stdout a regular file)."""
    check_path(path, what)
    kind = "a link" if Path(path).is_symlink() else non_regular_kind(path)
    if kind is None:
        return
    raise FiveError(f"{what + ' ' if what else ''}{path} is {kind}; five writes only regular files")


def atomic_write(path: Path, write) -> None:
    """`write(file)` into a temp file beside `path`, then rename it over `path` (a regular file or nothing)."""
    path = Path(path)
    refuse_non_regular(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = new_temporary(path)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_copy(source: Path, path: Path) -> None:
    """`source`'s bytes into `path` as atomic_write writes (a new file's mode, never half a copy)."""
    with open(source, "rb") as original:
        atomic_write(path, lambda file: shutil.copyfileobj(original, file))


def new_temporary(path: Path) -> tuple[int, Path]:
    """A new file beside `path` (`.NAME.<random>.tmp`), opened for writing with the mode any new file gets, 0666
    less the umask (mkstemp's 0600 would hide every result from the group on a shared cluster)."""
    while True:
        temp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
        try:
            return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666), temp
        except FileExistsError:  # 2⁻⁶⁴ odds: draw another name
            continue


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Temp files a killed writer left beside `path` (never loaded: only a completed rename counts)."""
    stale = list(Path(path).parent.glob(f".{Path(path).name}.*.tmp"))
    for file in stale:
        file.unlink(missing_ok=True)
    return stale


def refuse_non_regular_input(path: Path) -> None:
    """Never read anything but a regular file: a FIFO would block and a device (/dev/zero) never end."""
    kind = non_regular_kind(path)
    if kind is not None:
        raise FiveError(f"{path} is {kind}, not a file five wrote; {repair_advice(path)}")


def read_json(path: Path) -> dict:
    refuse_non_regular_input(path)
    try:
        payload = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FiveError(f"{path} is damaged: not valid JSON ({error}); {repair_advice(path)}") from None
    except RecursionError:
        raise FiveError(f"{path} is damaged: nested too deeply to read; {repair_advice(path)}") from None
    if not isinstance(payload, dict):
        raise FiveError(f"{path} is damaged: a JSON object was expected; {repair_advice(path)}")
    return payload


TRAIN_RECORD_FIELDS = {"status": (str,), "config": (dict,), "history": (list, type(None))}


def read_train_record(path: Path) -> dict:
    """A run's train.json, refused in one line where a field five reads from it is missing or of another
    type (a file edited or copied in by hand)."""
    record = read_json(path)
    wrong = [name for name, kinds in TRAIN_RECORD_FIELDS.items() if not isinstance(record.get(name), kinds)]
    if not wrong and record["status"] in FINISHED and not finished_history(record):
        wrong = ["history"]  # a running run's history is its checkpoint's: resuming re-derives it
    if wrong:
        raise FiveError(
            f"{path} is damaged: its {', '.join(wrong)} is missing or not as five writes it; {MOVE_ASIDE_ADVICE}"
        )
    return record


RECORD_SIZE_LIMIT = 64 * 2**20  # bytes: a train.json holds a history of some thousand epochs, far less


def is_run_folder(folder: Path) -> bool:
    """Whether `folder` holds a run: its train.json is a training record (a file of that name that is something
    else, e.g. a data split in a folder above the results, makes no run folder)."""
    path = Path(folder) / TRAIN_JSON
    try:
        if not path.is_file() or path.stat().st_size > RECORD_SIZE_LIMIT:
            return False
        read_train_record(path)
    except (OSError, FiveError):
        return False
    return True


def check_not_in_another_run(
    run: Path | None, given: Path, folder: Path, option: str, planned: Iterable[Path] = ()
) -> None:
    """What a command writes (into `folder`) never lies in the folder of a run other than its own `run`: as its
    eval.json or grids the results would pass for that run's, as any other file (train.done, …) it would
    replace that run's. `planned`: run folders to be made (a sweep's, a command's own new ones), runs already."""
    own, folder = run and run.resolve(), folder.resolve()
    planned = {Path(other).resolve() for other in planned}
    for outer in (folder, *folder.parents):
        if outer == own:
            return
        if outer in planned or is_run_folder(outer):
            whose = f", not in {run}'s" if run is not None else ""
            raise FiveError(f"{option} {shown_path(given)} lies in the run folder {shown_path(outer)}{whose}")


def finished_history(record: dict) -> bool:
    """Whether a finished run's history is as five writes it: entries with an epoch, at least one unless the
    run diverged (in its first epoch)."""
    history = record["history"]
    if not isinstance(history, list) or not all(isinstance(entry, dict) and "epoch" in entry for entry in history):
        return False
    return bool(history) or record["status"] == "diverged"


def check_evaluated_after_training(run_dir: Path, train: dict, evaluation: dict) -> None:
    """A run is tabled only from a finished training and an evaluation of the checkpoint that training ended
    with (best.pt: its best epoch; checkpoint.pt: its last): anything else would label one model's numbers
    with another's record, so it stops the aggregation (or the sync to MLflow), naming the run."""
    if train.get("status") not in FINISHED:
        raise FiveError(f"{run_dir}: its training has not finished (train.json says {train.get('status')!r})")
    if train["status"] == "diverged":  # no checkpoint to match (one found degenerate at evaluation names its own)
        return
    selection = evaluation.get("model_selection")
    if selection not in ("best", "last") or evaluation.get("checkpoint_epoch") is None:
        return  # an eval.json from before these fields were recorded
    expected = train.get("best_epoch") if selection == "best" else train.get("epochs_completed")
    if evaluation["checkpoint_epoch"] != expected:
        raise FiveError(
            f"{run_dir}: eval.json evaluated epoch {evaluation['checkpoint_epoch']}, but its training's "
            f"{'best' if selection == 'best' else 'last'} epoch is {expected}: the evaluation is older than the "
            "training (evaluate it again, e.g. snakemake --forcerun evaluate)"
        )


def write_json(path: Path, payload: dict) -> None:
    atomic_write(path, lambda file: file.write((json.dumps(payload, indent=2) + "\n").encode()))


@contextmanager
def run_lock(run_dir: Path):
    """Hold `run_dir/.lock` for the process life (released by the OS even on kill -9): a second `five train`
    on the same folder refuses instead of touching the first one's files. A folder made here that holds
    nothing but the lock when the run ends (it failed before writing anything) is removed, still locked."""
    made = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FiveError(f"the run folder {run_dir} cannot be made: {error.strerror}") from None
    refuse_non_regular(run_dir / LOCK_NAME)  # a FIFO there would block
    with open(run_dir / LOCK_NAME, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FiveError(
                f"another `five train` is running in {run_dir} (it holds {run_dir / LOCK_NAME}); "
                "wait for it to finish or use another --out"
            ) from None
        if not _is_file_at(handle, run_dir / LOCK_NAME):  # a failed run removed it between our open and lock
            raise FiveError(f"{run_dir} was removed while this run was locking it; run again")
        try:
            yield
        finally:
            if made and [path.name for path in run_dir.iterdir()] == [LOCK_NAME]:
                with suppress(OSError):
                    (run_dir / LOCK_NAME).unlink()
                    run_dir.rmdir()


def _is_file_at(handle, path: Path) -> bool:
    """Whether the open file `handle` is (still) the file at `path`."""
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def move_aside(run_dir: Path, names=(CHECKPOINT_NAME, BEST_NAME, TRAIN_JSON, EVAL_JSON, GRIDS)) -> Path | None:
    """Move a run's files (and its image grids) to run_dir/.superseded/<UTC timestamp>/ (never delete finished
    work): nothing of the old configuration stays beside the new one's."""
    present = [run_dir / name for name in names if (run_dir / name).exists() or (run_dir / name).is_symlink()]
    if not present:
        return None
    kind = not_a_folder(run_dir / SUPERSEDED)
    if kind is not None:
        raise FiveError(
            f"{run_dir / SUPERSEDED} is {kind}, not the folder a superseded run's files go to; move it away"
        )
    target = run_dir / SUPERSEDED / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    suffix = 0
    while target.exists():
        suffix += 1
        target = target.with_name(f"{target.name.split('.')[0]}.{suffix}")
    target.mkdir(parents=True)
    for path in present:
        shutil.move(str(path), target / path.name)
    return target


def not_a_folder(path: Path) -> str | None:
    """What `path` is where it is there but no folder ("a file", "a FIFO", …); None where it is a folder or
    nothing."""
    kind = "a file" if Path(path).is_file() else non_regular_kind(Path(path))
    return None if kind == "a folder" else kind


def check_apart(paths: list[Path], what: str, nested: bool = True) -> None:
    """Paths an option gives one per run are each their own: none named twice, and (`nested`: the option writes
    them) none inside another (`--out a a/b` would write a file where the other needs a folder, after the first
    evaluation was computed)."""
    resolved = [Path(path).resolve() for path in paths]
    for index, path in enumerate(resolved):
        for other, given in zip(resolved[index + 1 :], paths[index + 1 :]):
            if path == other:
                raise FiveError(f"a path is named twice in {what}: {shown_path(given)}")
            if nested and (path in other.parents or other in path.parents):
                inner, outer = (given, paths[index]) if path in other.parents else (paths[index], given)
                raise FiveError(f"{what} {shown_path(inner)} lies inside {shown_path(outer)}, also given in {what}")


def check_output_dir(path: Path, what: str) -> None:
    """Before any compute: `path` can be (or is) a writable folder."""
    path = Path(path)
    kind = not_a_folder(path)
    if kind is not None:
        raise FiveError(f"{what} {path} is {kind}, not a folder")
    _check_creatable(path, what)


def check_output_file(path: Path, what: str, protected=()) -> None:
    """Before any compute: `path` can be written as a file, is not named as a run's own files (RUN_OWN_FILES)
    and is none of the `protected` files (what the command reads or writes besides)."""
    path = Path(path)
    if path.is_dir():
        raise FiveError(f"{what} {path} is a folder, not a file")
    refuse_non_regular(path, what)
    if path.name in RUN_OWN_FILES:  # only `five train` writes these: anything else there would pass for a run's
        raise FiveError(f"{what} {path} is named as a training run's own {path.name}; choose another file")
    if any(path.resolve() == Path(other).resolve() for other in protected):
        raise FiveError(f"{what} {path} would overwrite {path.name}, which this command reads or writes")
    _check_creatable(path.parent, what)
    if path.exists() and not os.access(path, os.W_OK):
        raise FiveError(f"{what} {path} is not writable")


def _check_creatable(folder: Path, what: str) -> None:
    existing = folder
    while not existing.exists():
        if existing.is_symlink():  # mkdir would fail on it after the compute
            raise FiveError(f"{what} {shown_path(folder)} lies under {shown_path(existing)}, a link to nothing")
        existing = existing.parent
    if not existing.is_dir():
        raise FiveError(f"{what} {folder} lies under {existing}, which is a file")
    try:  # a file made and removed: os.access says yes to root on /sys, /proc and read-only mounts
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".five-write-check-"):
            pass
    except OSError as error:
        raise FiveError(f"{what} {folder} cannot be written ({existing}: {error.strerror})") from None


def local_artifact_folder(location: str | None) -> Path | None:
    """The folder of a local artifact location (a path, or a file: URI); None for none and for s3:// and the like."""
    parsed = urlparse(location or "")
    if location is None or parsed.scheme not in ("", "file"):
        return None
    return Path(url2pathname(parsed.path) if parsed.scheme else location)
