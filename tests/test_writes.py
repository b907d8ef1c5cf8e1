"""Writes go only onto regular files (issue 20): a device, FIFO, socket, folder or dangling link in the place of
an output is refused in one line (exit 2) before any compute, and stays what it was. Devices themselves are
never touched here: a FIFO, a socket and links in a temp folder stand in for them."""

import os
import socket
import stat

import pytest

from five.base.errors import FiveError
from five.base.files import refuse_non_regular, write_json
from five.cli import main

KINDS = ("fifo", "socket", "folder", "dangling link", "link to a fifo", "link to a file")


def make(path, kind):
    """Put a non-regular file of `kind` at `path`; returns a check that it is still there, unchanged in kind."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    elif kind == "folder":
        path.mkdir()
    elif kind == "dangling link":
        path.symlink_to(path.parent / "nowhere")
    elif kind == "link to a file":  # /dev/stdout → /proc/self/fd/1 → a log file: the link must stay a link
        (path.parent / "a-file").write_text("kept")
        path.symlink_to(path.parent / "a-file")
    else:
        os.mkfifo(path.parent / "a-fifo")
        path.symlink_to(path.parent / "a-fifo")
    mode = os.lstat(path).st_mode
    kept = (path.parent / "a-file").read_text() if kind == "link to a file" else None
    return lambda: (
        os.lstat(path).st_mode == mode
        and not stat.S_ISREG(os.lstat(path).st_mode)
        and (kept is None or (path.parent / "a-file").read_text() == kept)
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "vae"
    assert (
        main(
            [
                "train",
                "--model",
                "vae",
                "--dataset",
                "digits",
                "--latent-dim",
                "2",
                "--epochs",
                "1",
                "--hidden-width",
                "8",
                "--device",
                "cpu",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    return run


def one_line_refusal(capsys, monkeypatch, argv, expected):
    """`five ARGV` ends in one line naming `expected`, exit 2, and neither training nor evaluation started."""

    def no_compute(*args, **kwargs):
        raise AssertionError("compute started before the output was checked")

    monkeypatch.setattr("five.run.train.train", no_compute)
    monkeypatch.setattr("five.run.evaluate.evaluate_run", no_compute)
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert "regular file" in lines[0] or "is a folder" in lines[0], lines


@pytest.mark.parametrize("kind", KINDS)
def test_the_atomic_writer_refuses_a_non_regular_target(tmp_path, kind):
    target = tmp_path / "out.json"
    unchanged = make(target, kind)
    with pytest.raises(FiveError, match="writes only regular files"):
        write_json(target, {"a": 1})
    assert unchanged()
    assert not list(tmp_path.glob(".out.json.*.tmp"))


@pytest.mark.parametrize("kind", KINDS)
def test_evaluate_out_that_is_not_a_regular_file_is_refused_before_compute(
    tmp_path, capsys, monkeypatch, trained, kind
):
    target = tmp_path / "eval.json"
    unchanged = make(target, kind)
    one_line_refusal(
        capsys,
        monkeypatch,
        ["evaluate", "--run", str(trained), "--importance-samples", "2", "--device", "cpu", "--out", str(target)],
        "--out",
    )
    assert unchanged()


@pytest.mark.parametrize("kind", KINDS)
def test_evaluate_image_grids_onto_a_non_regular_file_are_refused_before_compute(
    tmp_path, capsys, monkeypatch, trained, kind
):
    images = tmp_path / "grids"
    images.mkdir()
    unchanged = make(images / "samples.png", kind)
    one_line_refusal(
        capsys,
        monkeypatch,
        [
            "evaluate",
            "--run",
            str(trained),
            "--importance-samples",
            "2",
            "--device",
            "cpu",
            "--image-dir",
            str(images),
            "--out",
            str(tmp_path / "eval.json"),
        ],
        "--image-dir",
    )
    assert unchanged() and not (tmp_path / "eval.json").exists()


@pytest.mark.parametrize("name", ["train.json", "checkpoint.pt", "best.pt"])
@pytest.mark.parametrize("kind", ["fifo", "folder", "dangling link"])
def test_train_refuses_a_run_folder_whose_files_are_not_regular(tmp_path, capsys, monkeypatch, name, kind):
    run = tmp_path / "run"
    run.mkdir()
    unchanged = make(run / name, kind)
    one_line_refusal(
        capsys,
        monkeypatch,
        [
            "train",
            "--model",
            "vae",
            "--dataset",
            "digits",
            "--latent-dim",
            "2",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--out",
            str(run),
        ],
        "--out",
    )
    assert unchanged()


def test_regular_files_and_absent_paths_are_writable(tmp_path):
    refuse_non_regular(tmp_path / "absent.json")
    (tmp_path / "present.json").write_text("{}")
    refuse_non_regular(tmp_path / "present.json")
    write_json(tmp_path / "present.json", {"b": 2})
    assert (tmp_path / "present.json").read_text().strip().startswith("{")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    """An atomic write's file (train.json, eval.json, checkpoints, the estimate) has the mode any new file gets, as
    the tables beside it have: a group reads a teammate's results on a shared cluster where the umask lets it."""
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "train.json", {"status": "complete"})
        (tmp_path / "plain.csv").write_text("")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "train.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "plain.csv").stat().st_mode) == mode


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    from five.base.files import atomic_write

    path = tmp_path / "record.json"
    path.write_text("old")

    def fails_halfway(file):
        file.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fails_halfway)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_runs_moved_aside_within_one_second_keep_folders_of_their_own(tmp_path, monkeypatch):
    """Three edits in the same second: each superseded run gets its own folder, none is moved into another's."""
    from five.base.files import move_aside

    monkeypatch.setattr("five.base.files.time.strftime", lambda pattern, moment: "20261207T120000Z")
    targets = []
    for attempt in range(3):
        (tmp_path / "train.json").write_text(str(attempt))
        targets.append(move_aside(tmp_path))
    assert len(set(targets)) == 3
    assert [(target / "train.json").read_text() for target in targets] == ["0", "1", "2"]
