"""Every bad command-line input is one line `five: error: …` naming the file and the cause, exit code 2,
before any compute; finished work is never lost (issue 11). Table-driven: each case builds its bad input."""

import io
import json
import os
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

from five.base.files import run_lock
from five.cli import main
from five.model.models import CONTINUOUS_LOG_SIGMA_FLOOR

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"train": np.zeros((20, 4), np.float32), "test": np.ones((10, 4), np.float32)}


def npz(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def run_cli(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        try:
            code = main([str(part) for part in argv])
        except SystemExit as exit_:  # argparse
            code = exit_.code
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(autouse=True)
def in_a_scratch_folder(tmp_path, monkeypatch):
    """A guard that fails (a mutation check) writes into the current folder: never the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    code, _, err = run_cli(
        [
            "train",
            "--model",
            "vae",
            "--dataset",
            "digits",
            "--latent-dim",
            2,
            "--epochs",
            1,
            "--hidden-width",
            8,
            "--device",
            "cpu",
            "--out",
            run,
        ]
    )
    assert code == 0, err
    return run


def copy_run(trained, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("checkpoint.pt", "best.pt", "train.json"):
        (run / name).write_bytes((trained / name).read_bytes())
    return run


def train_on(data):
    return [
        "train",
        "--model",
        "vae",
        "--dataset",
        f"npz:{data}",
        "--latent-dim",
        2,
        "--epochs",
        1,
        "--device",
        "cpu",
        "--out",
    ]


def train_with(*options, out):
    """A digits VAE run with `options` in place of the defaults they name."""
    settings = dict(
        zip(["--model", "--dataset", "--latent-dim", "--epochs", "--device"], ["vae", "digits", 2, 1, "cpu"])
    )
    settings |= dict(zip(options[::2], options[1::2]))
    return ["train", *(part for pair in settings.items() for part in pair), "--out", out]


def evaluate(run, *extra, out=None):
    return [
        "evaluate",
        "--run",
        run,
        "--importance-samples",
        2,
        "--device",
        "cpu",
        *extra,
        "--out",
        out or run / "eval.json",
    ]


def with_state(trained, tmp_path, name, change):
    run = copy_run(trained, tmp_path)
    state = torch.load(run / name, weights_only=True)
    change(state)
    torch.save(state, run / name)
    return run


def bad_bytes(trained, tmp_path, name, content):
    run = copy_run(trained, tmp_path)
    (run / name).write_bytes(content(run / name) if callable(content) else content)
    return run


def replaced(run, name, make):
    """`run` with its file `name` replaced by what `make(path)` puts there (a FIFO, a link)."""
    (run / name).unlink()
    make(run / name)
    return run


def edited_record(run, **fields):
    record = json.loads((run / "train.json").read_text())
    (run / "train.json").write_text(json.dumps(record | fields))
    return run


def tampered_model(state):
    state["model"]["surprise.weight"] = torch.zeros(1)


HELD_LOCKS = []  # kept referenced: a collected lock would close its file and release the lock


def held_lock(tmp_path):
    """A run folder whose lock another holder has (a separate open file: flock conflicts as across processes)."""
    out = tmp_path / "locked"
    lock = run_lock(out)
    lock.__enter__()
    HELD_LOCKS.append(lock)
    return out


# (id, builder(tmp_path, trained) → argv, expected part of the one line)
LONG_NAME = "x" * 245  # a name the file system takes, but not with the 14 bytes atomic_write's temporary adds
IMPOSSIBLE_NAME = "x" * 300  # beyond the 255 bytes of any name


def _link_loop(t: Path) -> Path:
    (t / "loop1").symlink_to(t / "loop2")
    (t / "loop2").symlink_to(t / "loop1")
    return t / "loop1"


CASES = [
    (
        "estimate on more GPUs than any machine",
        lambda t, r: ["estimate", "--configfile", ROOT / "config" / "quick.yaml", "--gpus", 10**20],
        "--gpus must be from 1 to 4096, got 1.000e+20",
    ),
    (  # the time it would take is not measured by allocating 300 million GiB
        "time-steps of a network beyond memory",
        lambda t, r: [
            "time-steps",
            "--dataset",
            "digits",
            "--points",
            '[{"model": "vae", "latent_dim": 2, "hidden_width": 100000000}]',
            "--out",
            t / "t.csv",
        ],
        "training needs 298,023,429.5 GiB for them alone",
    ),
    (
        "out name too long",
        lambda t, r: train_with(out=t / LONG_NAME),
        "a name of 245 bytes; five takes names of at most 241",
    ),
    (
        "evaluation out name too long",
        lambda t, r: ["evaluate", "--run", r, "--out", t / f"{LONG_NAME}.json"],
        "argument --out: ",
    ),
    ("out through a link loop", lambda t, r: train_with(out=_link_loop(t) / "run"), "runs through a link loop"),
    ("run through a link loop", lambda t, r: ["evaluate", "--run", _link_loop(t)], "runs through a link loop"),
    ("image dir a link loop", lambda t, r: ["evaluate", "--run", r, "--image-dir", _link_loop(t)], "link loop"),
    ("npz name too long", lambda t, r: train_on(t / f"{IMPOSSIBLE_NAME}.npz") + [t / "o"], "a name of 304 bytes"),
    ("npz truncated", lambda t, r: train_on(_truncate(npz(t, **GOOD))) + [t / "o"], "not a readable .npz"),
    ("npz not a zip", lambda t, r: train_on(_text(t / "x.npz")) + [t / "o"], "not a readable .npz"),
    (
        "npz object array",
        lambda t, r: train_on(npz(t, train=np.array([{"a": 1}] * 3, dtype=object), test=GOOD["test"])) + [t / "o"],
        "pickled Python objects",
    ),
    (
        "npz strings",
        lambda t, r: train_on(npz(t, train=np.array([["a", "b"]] * 3), test=GOOD["test"])) + [t / "o"],
        "array 'train' has dtype <U1",
    ),
    (
        "npz levels not scalar",
        lambda t, r: train_on(npz(t, **GOOD, discrete_levels=np.array([2, 3]))) + [t / "o"],
        "discrete_levels must be one integer",
    ),
    (
        "npz empty split",
        lambda t, r: train_on(npz(t, train=np.zeros((0, 4)), test=GOOD["test"])) + [t / "o"],
        "array 'train' is empty",
    ),
    (
        "npz shapes differ",
        lambda t, r: train_on(npz(t, train=GOOD["train"], test=np.ones((3, 5)))) + [t / "o"],
        "equal example shape",
    ),
    (
        "npz NaN",
        lambda t, r: train_on(npz(t, train=_with(GOOD["train"], np.nan, 3), test=GOOD["test"])) + [t / "o"],
        "array 'train' contains 3 NaN and 0 infinite values",
    ),
    (
        "npz Inf",
        lambda t, r: train_on(npz(t, train=GOOD["train"], test=_with(GOOD["test"], np.inf, 2))) + [t / "o"],
        "array 'test' contains 0 NaN and 2 infinite values",
    ),
    (  # one test example: every variance over examples would be 0, so 0 active units
        "npz one test example",
        lambda t, r: train_on(npz(t, train=GOOD["train"], test=GOOD["test"][:1])) + [t / "o"],
        "array 'test' holds 1 example",
    ),
    ("npz no test", lambda t, r: train_on(npz(t, train=GOOD["train"])) + [t / "o"], "lacks the array(s) test"),
    ("npz missing", lambda t, r: train_on(t / "none.npz") + [t / "o"], "npz data file not found"),
    (  # looked up from the working directory, which the line names
        "npz missing, relative",
        lambda t, r: train_on("none-here.npz") + [t / "o"],
        "npz data file not found: none-here.npz (in /",
    ),
    ("npz a device", lambda t, r: train_on("/dev/zero") + [t / "o"], "npz data file /dev/zero is a device, not a file"),
    ("npz a folder", lambda t, r: train_on(t) + [t / "o"], "is a folder, not a file"),
    ("evaluate onto the run's lock", lambda t, r: evaluate(copy_run(r, t), out=t / "run" / ".lock"), "own .lock"),
    ("train --out empty", lambda t, r: train_with(out=""), "--out: an empty path was given"),
    ("run folder unmakeable", lambda t, r: train_with(out="/sys/five-run"), "/sys/five-run"),  # as root: mkdir
    ("lr beyond float32", lambda t, r: train_with("--lr", 1e300, out=t / "o"), "lr is 1e+300, beyond float32"),
    (  # 0 in float32: every update would be 0, a run that trains nothing
        "lr below float32",
        lambda t, r: train_with("--lr", 1e-50, out=t / "o"),
        "lr is 1e-50, beyond float32",
    ),
    ("log sigma lr below float32", lambda t, r: train_with("--log-sigma-lr", 1e-40, out=t / "o"), "beyond float32"),
    ("seed beyond 64 bits", lambda t, r: train_with("--seed", 2**64, out=t / "o"), "beyond the 64-bit integers"),
    (
        "train.json a FIFO",
        lambda t, r: evaluate(replaced(copy_run(r, t), "train.json", os.mkfifo)),
        "train.json is a FIFO, not a file five wrote",
    ),
    (
        "train.json a link to a device",
        lambda t, r: evaluate(replaced(copy_run(r, t), "train.json", lambda p: p.symlink_to("/dev/zero"))),
        "train.json is a device",
    ),
    (
        "best.pt a FIFO",
        lambda t, r: evaluate(replaced(copy_run(r, t), "best.pt", os.mkfifo)),
        "best.pt is a FIFO, not a file five wrote",
    ),
    (
        "train.json nested too deeply",
        lambda t, r: evaluate(bad_bytes(r, t, "train.json", b"[" * 100_000 + b"]" * 100_000)),
        "train.json is damaged: nested too deeply",
    ),
    (
        "train.json config null",
        lambda t, r: evaluate(edited_record(copy_run(r, t), config=None)),
        "train.json is damaged: its config is missing",
    ),
    (
        "checkpoint epoch negative",
        lambda t, r: evaluate(
            with_state(r, t, "checkpoint.pt", lambda s: s.update(epoch=-5)), "--model-selection", "last"
        ),
        "checkpoint.pt is damaged: its epoch or config",
    ),
    (
        "mlflow-sync of a FIFO train.json",
        lambda t, r: ["mlflow-sync", "--experiment", "e", replaced(copy_run(r, t), "train.json", os.mkfifo)],
        "train.json is a FIFO",
    ),
    (
        "npz values beyond float32",
        lambda t, r: train_on(npz(t, train=np.full((50, 4), 1e39), test=GOOD["test"][:, :4])) + [t / "o"],
        "holds values up to 1e+39, beyond float32",
    ),
    (  # float32 keeps too little of the dequantisation noise u in (n + u)/L beyond 2^16 levels
        "npz levels beyond float32's dequantisation",
        lambda t, r: train_on(npz(t, train=GOOD["train"], test=GOOD["test"], discrete_levels=np.int64(2**16 + 1)))
        + [t / "o"],
        "discrete_levels 65537 exceeds 65,536: dequantised in float32",
    ),
    (  # numpy hands over a member without the npy header as bytes
        "npz member that is no saved array",
        lambda t, r: train_on(_zip_of(t / "raw.npz", {"train.npy": b"garbage", "test.npy": b"x"})) + [t / "o"],
        "raw.npz is not a readable .npz (its member 'train' is not a saved numpy array)",
    ),
    (
        "npz levels that are no saved array",
        lambda t, r: train_on(
            _zip_of(
                t / "raw.npz",
                {"train.npy": _npy(GOOD["train"]), "test.npy": _npy(GOOD["test"]), "discrete_levels.npy": b"junk"},
            )
        )
        + [t / "o"],
        "its member 'discrete_levels' is not a saved numpy array",
    ),
    (  # Python 3.11's resolve() raises on a link loop: the data file is checked before it
        "npz a link loop",
        lambda t, r: train_on(_link_loop(t)) + [t / "o"],
        "loop1 runs through a link loop",
    ),
    (
        "time-steps on a link loop",
        lambda t, r: [
            "time-steps",
            "--dataset",
            f"npz:{_link_loop(t)}",
            "--points",
            '[{"model": "vae", "latent_dim": 2}]',
            "--out",
            t / "t.csv",
        ],
        "loop1 runs through a link loop",
    ),
    ("mlflow-init empty experiment", lambda t, r: ["mlflow-init", "--experiment", ""], "an empty value was given"),
    ("experiment of two lines", lambda t, r: ["mlflow-sync", "--experiment", "a\nb", r], "'a\\nb' holds a control"),
    (
        "artifact store of two lines",
        lambda t, r: ["mlflow-init", "--experiment", "x", "--artifact-location", "x\ny"],
        "'x\\ny' holds a control character",
    ),
    ("out under a link to nothing", lambda t, r: evaluate(r, out=_dangling(t) / "e.json"), "a link to nothing"),
    ("a run inside another run", lambda t, r: train_with(out=r / "nested"), "lies in the run folder"),
    (
        "artifacts into a run's folder",
        lambda t, r: ["mlflow-sync", "--experiment", "x", "--artifact-location", r / "arts", r],
        "--artifact-location",
    ),
    (
        "training's artifacts into a run's folder",
        lambda t, r: train_with("--mlflow-experiment", "e", "--mlflow-artifact-location", r / "arts", out=t / "o"),
        "--mlflow-artifact-location",
    ),
    (
        "a folder holding runs trained as one run",
        lambda t, r: train_with(out=copy_run(r, t).parent),
        "holds the run folder",
    ),
    ("an estimate into a run's folder", lambda t, r: estimate_into(r / "estimate.csv"), "lies in the run folder"),
    (
        "an evaluation onto a file that is no evaluation",
        lambda t, r: evaluate(r, out=_text_as(t / "runs.csv", "dataset,model\ndigits,vae\n")),
        "exists and is no evaluation of five's",
    ),
    (
        "a download into a run's folder",
        lambda t, r: ["download", "--dataset", "mnist", "--data-dir", r],
        "lies in the run folder",
    ),
    (
        "GPU locks in a run's folder",
        lambda t, r: evaluate(r, "--gpu-lock-dir", r / "locks", out=t / "e.json"),
        "--gpu-lock-dir",
    ),
    (
        "a sweep point's folder synced as a run",
        lambda t, r: ["mlflow-sync", "--experiment", "x", copy_run(r, t).parent],
        "holds the run folder",
    ),
    (
        "a run inside the artifact store",
        lambda t, r: train_with(
            "--mlflow-experiment", "e", "--mlflow-artifact-location", t / "art", out=t / "art" / "r1"
        ),
        "holds the run folder",
    ),
    (
        "an artifact store with a name too long for a file system",
        lambda t, r: ["mlflow-init", "--experiment", "e", "--artifact-location", (t / ("a" * 300)).as_uri()],
        "holds a name of 300 bytes",
    ),
    (
        "an MLflow run key without an experiment",
        lambda t, r: evaluate(r, "--mlflow-run-key", "k", out=t / "e.json"),
        "--mlflow-run-key is given without --mlflow-experiment",
    ),
    (
        "training's artifacts into its own new run folder",
        lambda t, r: train_with("--mlflow-experiment", "e", "--mlflow-artifact-location", t / "o" / "a", out=t / "o"),
        "--mlflow-artifact-location",
    ),
    (
        "step times, which log nothing, with an MLflow option",
        lambda t, r: time_steps("manifold", t / "s.csv") + ["--mlflow-artifact-location", "/dev/null"],
        "unrecognized arguments: --mlflow-artifact-location",
    ),
    (
        "an evaluation's artifacts as a file: URI into a run's folder",
        lambda t, r: evaluate(
            r, "--mlflow-experiment", "e", "--mlflow-artifact-location", (r / "arts").as_uri(), out=t / "e.json"
        ),
        "lies in the run folder",
    ),
    (
        "an evaluation's artifacts into a run's folder",
        lambda t, r: evaluate(
            r, "--mlflow-experiment", "e", "--mlflow-artifact-location", r / "arts", out=t / "e.json"
        ),
        "--mlflow-artifact-location",
    ),
    (
        "best.pt with a nan weight",
        lambda t, r: evaluate(
            with_state(r, t, "best.pt", lambda s: s["model"]["decoder.0.weight"].fill_(float("nan")))
        ),
        "best.pt holds nan or inf in decoder.0.weight: it has no result",
    ),
    (
        "best.pt with an infinite sigma",
        lambda t, r: evaluate(with_state(r, t, "best.pt", lambda s: s["model"]["log_sigma"].fill_(float("inf")))),
        "best.pt holds nan or inf in log_sigma",
    ),
    (
        "best.pt with a sigma beyond float32",  # finite weights, but exp(log σ) overflows: no Infinity in eval.json
        lambda t, r: evaluate(with_state(r, t, "best.pt", lambda s: s["model"]["log_sigma"].fill_(200.0))),
        "best.pt holds log σ = 200, whose σ² is inf in float32, the precision the likelihood is computed in",
    ),
    (
        "best.pt with a sigma below float32",
        lambda t, r: evaluate(with_state(r, t, "best.pt", lambda s: s["model"]["log_sigma"].fill_(-200.0))),
        "best.pt holds log σ = -200, whose σ² is 0 in float32",
    ),
    (
        "best.pt with a subnormal sigma squared",
        lambda t, r: evaluate(with_state(r, t, "best.pt", lambda s: s["model"]["log_sigma"].fill_(-45.0))),
        "best.pt holds log σ = -45, whose σ² is 8.",
    ),
    (
        "best.pt with an infinite validation NLL",
        lambda t, r: evaluate(with_state(r, t, "best.pt", lambda s: s.update(val_nll=float("inf")))),
        "best.pt is damaged: its validation NLL is inf",
    ),
    (
        "best.pt with a bool log sigma",  # load_state_dict would cast it to 1.0
        lambda t, r: evaluate(with_state(r, t, "best.pt", lambda s: s["model"].update(log_sigma=torch.tensor(True)))),
        "best.pt does not fit this model (log_sigma is a torch.bool tensor where the model has torch.float32)",
    ),
    (
        "best.pt with complex weights",
        lambda t, r: evaluate(
            with_state(r, t, "best.pt", lambda s: s["model"].update({"head.bias": s["model"]["head.bias"] + 0j}))
        ),
        "best.pt does not fit this model (head.bias is a torch.complex64 tensor where the model has torch.float32)",
    ),
    (
        "best.pt whose model is a list",
        lambda t, r: evaluate(with_state(r, t, "best.pt", lambda s: s.update(model=[1, 2]))),
        "best.pt does not fit this model",
    ),
    (
        "best.pt whose validation NLL is a tensor",
        lambda t, r: evaluate(with_state(r, t, "best.pt", lambda s: s.update(val_nll=torch.tensor(1.0)))),
        "best.pt is damaged: its validation NLL is tensor(1.)",
    ),
    (
        "mlflow-init onto a link to nothing",
        lambda t, r: ["mlflow-init", "--experiment", "e", "--artifact-location", _dangling(t)],
        "is a link to nothing, not a folder",
    ),
    (
        "mlflow-init onto a device as a file URI",
        lambda t, r: ["mlflow-init", "--experiment", "e", "--artifact-location", "file:///dev/null"],
        "--artifact-location /dev/null is a device, not a folder",
    ),
    (
        "mlflow-init onto a FIFO as a percent-encoded file URI",
        lambda t, r: ["mlflow-init", "--experiment", "e", "--artifact-location", _fifo_uri(t)],
        "my fifo is a FIFO, not a folder",
    ),
    (
        "mlflow-sync of a missing folder",
        lambda t, r: ["mlflow-sync", "--experiment", "e", t / "results" / "no-such-run"],
        "no-such-run is not a run folder",
    ),
    (
        "mlflow-sync of a file",
        lambda t, r: ["mlflow-sync", "--experiment", "e", copy_run(r, t) / "train.json"],
        "train.json is not a run folder",
    ),
    (
        "mlflow-init onto a device",
        lambda t, r: ["mlflow-init", "--experiment", "e", "--artifact-location", "/dev/null"],
        "--artifact-location /dev/null is a device, not a folder",
    ),
    (
        "train with MLflow artifacts onto a device",
        lambda t, r: train_with("--mlflow-experiment", "e", "--mlflow-artifact-location", "/dev/null", out=t / "o"),
        "--mlflow-artifact-location /dev/null is a device, not a folder",
    ),
    (
        "download into a device",
        lambda t, r: ["download", "--dataset", "mnist", "--data-dir", "/dev/null"],
        "--data-dir /dev/null is a device, not a folder",
    ),
    ("dataset unknown", lambda t, r: train_with("--dataset", "nosuch", out=t / "o"), "unknown dataset 'nosuch'"),
    (
        "hidden width beyond torch's sizes",
        lambda t, r: train_with("--hidden-width", 10**30, out=t / "o"),
        "hidden_width is 1.000e+30, beyond the 64-bit integers",  # not 31 digits in one line
    ),
    (
        "hidden width whose layer overflows",
        lambda t, r: train_with("--hidden-width", 3037000500, out=t / "o"),
        "cannot be built: Storage size calculation overflowed",
    ),
    (
        "checkpoint random bytes",
        lambda t, r: evaluate(bad_bytes(r, t, "checkpoint.pt", b"\x13\x37" * 500), "--model-selection", "last"),
        "checkpoint.pt is damaged",
    ),
    (
        "checkpoint truncated",
        lambda t, r: evaluate(
            bad_bytes(r, t, "checkpoint.pt", lambda p: p.read_bytes()[:300]), "--model-selection", "last"
        ),
        "checkpoint.pt is damaged",
    ),
    (
        "checkpoint empty",
        lambda t, r: evaluate(bad_bytes(r, t, "checkpoint.pt", b""), "--model-selection", "last"),
        "checkpoint.pt is damaged: empty file",
    ),
    (
        "checkpoint unknown keys",
        lambda t, r: evaluate(with_state(r, t, "best.pt", tampered_model)),
        "best.pt does not fit this model",
    ),
    (
        "checkpoint lacks config",
        lambda t, r: evaluate(with_state(r, t, "best.pt", lambda s: s.pop("config"))),
        "best.pt is damaged: it lacks config",
    ),
    (
        "best.pt random bytes",
        lambda t, r: evaluate(bad_bytes(r, t, "best.pt", b"PK\x03\x04junk")),
        "best.pt is damaged",
    ),
    (
        "train.json invalid",
        lambda t, r: evaluate(bad_bytes(r, t, "train.json", b"{not json")),
        "train.json is damaged: not valid JSON",
    ),
    (
        "resume from damaged checkpoint",
        lambda t, r: [
            "train",
            "--model",
            "vae",
            "--dataset",
            "digits",
            "--latent-dim",
            2,
            "--epochs",
            2,
            "--hidden-width",
            8,
            "--device",
            "cpu",
            "--out",
            bad_bytes(r, t, "checkpoint.pt", b"garbage"),
        ],
        "checkpoint.pt is damaged",
    ),
    ("train --out a file", lambda t, r: train_on(npz(t, **GOOD)) + [_text(t / "file")], "is a file, not a folder"),
    (
        "train --out under a file",
        lambda t, r: train_on(npz(t, **GOOD)) + [_text(t / "file") / "run"],
        "which is a file",
    ),
    ("evaluate --out a folder", lambda t, r: evaluate(copy_run(r, t), out=t), "is a folder"),
    (  # Path drops the '/': eval.json would be written where a folder was meant
        "evaluate --out ending in a slash",
        lambda t, r: evaluate(copy_run(r, t), out=f"{t}/run/eval.json/"),
        "eval.json/ names a folder (it ends in '/'), not a file",
    ),
    (
        "time-steps --out ending in a slash",
        lambda t, r: time_steps("digits", f"{t}/t.csv/"),
        "t.csv/ names a folder (it ends in '/'), not a file",
    ),
    (
        "evaluate --out checkpoint.pt",
        lambda t, r: evaluate(copy_run(r, t), out=t / "run" / "checkpoint.pt"),
        "is named as a training run's own checkpoint.pt",
    ),
    (
        "evaluate --out best.pt",
        lambda t, r: evaluate(copy_run(r, t), out=t / "run" / "best.pt"),
        "is named as a training run's own best.pt",
    ),
    (
        "evaluate --out under a file",
        lambda t, r: evaluate(copy_run(r, t), out=_text(t / "f") / "eval.json"),
        "which is a file",
    ),
    ("evaluate --run missing", lambda t, r: evaluate(t / "nothing", out=t / "e.json"), "is not a run folder"),
    (
        "absurd width",
        lambda t, r: [
            "train",
            "--model",
            "vae",
            "--dataset",
            "digits",
            "--latent-dim",
            2,
            "--hidden-width",
            10**7,
            "--device",
            "cpu",
            "--out",
            t / "o",
        ],
        "parameters: training needs",
    ),
    (
        "fif d > D",
        lambda t, r: [
            "train",
            "--model",
            "fif",
            "--dataset",
            "digits",
            "--latent-dim",
            65,
            "--device",
            "cpu",
            "--out",
            t / "o",
        ],
        "exceeds the data dimension D = 64",
    ),
    (
        "five d > D",
        lambda t, r: [
            "train",
            "--model",
            "five",
            "--dataset",
            "manifold",
            "--latent-dim",
            11,
            "--probes",
            1,
            "--device",
            "cpu",
            "--out",
            t / "o",
        ],
        "exceeds the data dimension D = 10",
    ),
    (
        "threads 0",
        lambda t, r: [
            "train",
            "--model",
            "vae",
            "--dataset",
            "digits",
            "--latent-dim",
            2,
            "--threads",
            0,
            "--out",
            t / "o",
        ],
        "--threads must be >= 1",
    ),
    ("sigma unknown", lambda t, r: evaluate(copy_run(r, t), "--sigma", "guess"), "unknown --sigma 'guess'"),
    (
        "log-sigma-lr on fif",
        lambda t, r: [
            "train",
            "--model",
            "fif",
            "--dataset",
            "digits",
            "--latent-dim",
            2,
            "--log-sigma-lr",
            0.1,
            "--out",
            t / "o",
        ],
        "applies only to models that learn",
    ),
    (
        "log-sigma-lr negative",
        lambda t, r: [
            "train",
            "--model",
            "vae",
            "--dataset",
            "digits",
            "--latent-dim",
            2,
            "--log-sigma-lr",
            -1,
            "--out",
            t / "o",
        ],
        "--log-sigma-lr must be a finite number > 0",
    ),
    (
        "second train on one folder",
        lambda t, r: [
            "train",
            "--model",
            "vae",
            "--dataset",
            "digits",
            "--latent-dim",
            2,
            "--epochs",
            1,
            "--device",
            "cpu",
            "--out",
            held_lock(t),
        ],
        "another `five train` is running in",
    ),
    (
        "beta not a number",
        lambda t, r: [
            "train",
            "--model",
            "fif",
            "--dataset",
            "digits",
            "--latent-dim",
            2,
            "--beta",
            "nan",
            "--out",
            t / "o",
        ],
        "--beta must be a finite number > 0",
    ),
    (
        "lr infinite",
        lambda t, r: [
            "train",
            "--model",
            "vae",
            "--dataset",
            "digits",
            "--latent-dim",
            2,
            "--lr",
            "inf",
            "--out",
            t / "o",
        ],
        "--lr must be a finite number > 0",
    ),
    ("evaluate batch size 0", lambda t, r: evaluate(copy_run(r, t), "--batch-size", 0), "--batch-size must be a whole"),
    (
        "evaluate batch size beyond int64",
        lambda t, r: evaluate(copy_run(r, t), "--batch-size", 10**20),
        "--batch-size must be a whole number from 1 to 2^63 - 1 (torch's integers), got 1.000e+20",
    ),
    (
        "importance samples beyond int64",
        lambda t, r: evaluate(copy_run(r, t), "--importance-samples", 2**63),
        "--importance-samples must be a whole number from 1 to 2^63 - 1",
    ),
    ("evaluate unknown split", lambda t, r: evaluate(copy_run(r, t), "--split", "train2"), "has no split 'train2'"),
    (
        "epochs not a number",
        lambda t, r: [
            "train",
            "--model",
            "vae",
            "--dataset",
            "digits",
            "--latent-dim",
            2,
            "--epochs",
            "30.0",
            "--out",
            t / "o",
        ],
        "invalid int value: '30.0'",
    ),
    (
        "surrogate point for vae",
        lambda t, r: [
            "train",
            "--model",
            "vae",
            "--dataset",
            "digits",
            "--latent-dim",
            2,
            "--surrogate-point",
            "sample",
            "--out",
            t / "o",
        ],
        "applies only to five, not vae",
    ),
    (
        "surrogate point unknown",
        lambda t, r: [
            "train",
            "--model",
            "five",
            "--dataset",
            "digits",
            "--latent-dim",
            2,
            "--surrogate-point",
            "median",
            "--out",
            t / "o",
        ],
        "--surrogate-point must be one of mean, sample",
    ),
    (
        "estimate config missing",
        lambda t, r: ["estimate", "--configfile", t / "none.yaml", "--out-dir", t],
        "none.yaml does not exist",
    ),
    (
        "estimate config not YAML",
        lambda t, r: ["estimate", "--configfile", _text_as(t / "c.yaml", "a: [1,\n"), "--out-dir", t],
        "is not valid YAML",
    ),
    (  # 100000 made torch crash with a segmentation fault
        "threads beyond the CPUs",
        lambda t, r: train_with("--threads", len(os.sched_getaffinity(0)) + 1, out=t / "o"),
        "CPUs this job may run on",
    ),
    (
        "estimate config not UTF-8",
        lambda t, r: ["estimate", "--configfile", _bytes_as(t / "c.yaml", b"experiment: t\xff\n"), "--out-dir", t],
        "c.yaml is not UTF-8 text (byte 13: invalid start byte)",
    ),
    (
        "estimate config typo",
        lambda t, r: [
            "estimate",
            "--configfile",
            _text_as(
                t / "c.yaml",
                "experiment: x\n"
                "seeds: [0]\nmodels: {vae: {}}\ndatasets: {digits: {latent_dims: [2], "
                "epochs: 1, epohcs: 2}}\n",
            ),
            "--out-dir",
            t,
        ],
        "epohcs",
    ),
    (
        "estimate gpus 0",
        lambda t, r: ["estimate", "--configfile", "config/quick.yaml", "--gpus", 0, "--out-dir", t],
        "--gpus must be from 1 to 4096, got 0",
    ),
    (
        "seed negative",
        lambda t, r: [
            "train",
            "--model",
            "vae",
            "--dataset",
            "digits",
            "--latent-dim",
            2,
            "--seed",
            -5,
            "--out",
            t / "o",
        ],
        "--seed must be >= 0, got -5",
    ),
    (
        "cuda graph unknown",
        lambda t, r: [
            "train",
            "--model",
            "vae",
            "--dataset",
            "digits",
            "--latent-dim",
            2,
            "--cuda-graph",
            "sometimes",
            "--out",
            t / "o",
        ],
        "--cuda-graph",
    ),
    (
        "estimate of a NaN lr",
        lambda t, r: [
            "estimate",
            "--configfile",
            _text_as(
                t / "c.yaml",
                "experiment: x\n"
                "seeds: [0]\nmodels: {vae: {}}\ndatasets: {digits: {latent_dims: [2], "
                "epochs: 1, lr: .nan}}\n",
            ),
            "--out-dir",
            t,
        ],
        "must be finite",
    ),
    (
        "estimate of a file-store tracking uri",
        lambda t, r: [
            "estimate",
            "--configfile",
            _text_as(
                t / "c.yaml",
                "experiment: x\ntracking_uri: ./mlruns\nseeds: [0]\nmodels: {vae: {}}\n"
                "datasets: {digits: {latent_dims: [2], epochs: 1}}\n",
            ),
            "--out-dir",
            t,
        ],
        "file store",
    ),
    (
        "evaluate a run whose record names another model",
        lambda t, r: evaluate(
            bad_bytes(r, t, "train.json", lambda p: p.read_text().replace('"vae"', '"fcvae"').encode())
        ),
        "holds two different runs (model 'fcvae' in train.json, 'vae' in best.pt)",
    ),
    (
        "evaluate a run whose record names another latent dim",
        lambda t, r: evaluate(
            bad_bytes(
                r, t, "train.json", lambda p: p.read_text().replace('"latent_dim": 2', '"latent_dim": 3').encode()
            )
        ),
        "latent_dim 3 in train.json, 2 in best.pt",
    ),
    (
        "evaluate a run whose record names another seed",
        lambda t, r: evaluate(
            bad_bytes(r, t, "train.json", lambda p: p.read_text().replace('"seed": 0', '"seed": 1').encode())
        ),
        "seed 1 in train.json, 0 in best.pt",
    ),
    (  # read for the files evaluate must not overwrite, before the record's own check
        "evaluate a run whose record has no config",
        lambda t, r: evaluate(
            bad_bytes(r, t, "train.json", lambda p: p.read_text().replace('"config":', '"konfig":').encode())
        ),
        "train.json",
    ),
    (
        "evaluate --image-dir a file",
        lambda t, r: evaluate(copy_run(r, t), "--image-dir", _text(t / "grids")),
        "--image-dir",
    ),
    (
        "time-steps --out a run's checkpoint",
        lambda t, r: time_steps("manifold", copy_run(r, t) / "checkpoint.pt"),
        "is named as a training run's own checkpoint.pt",
    ),
    (
        "time-steps --out its npz data",
        lambda t, r: time_steps(f"npz:{npz(t, **GOOD)}", t / "data.npz"),
        "would overwrite data.npz, which this command reads or writes",
    ),
    (
        "time-steps rounds beyond int64",
        lambda t, r: [
            *time_steps("digits", t / "t.csv")[:5],
            "--rounds",
            10**20,
            "--device",
            "cpu",
            "--out",
            t / "t.csv",
        ],
        "--rounds must be from 2 (pairs for an interval) to 2^63 - 1, got 1.000e+20",
    ),
    (  # refused before anything is timed: the output files are checked first
        "estimate.csv a link to a device",
        lambda t, r: estimate_into(_linked(t / "out" / "estimate.csv", "/dev/null")),
        "estimate.csv is a link",
    ),
    ("estimate.md a folder", lambda t, r: estimate_into(_folder(t / "out" / "estimate.md")), "estimate.md is a folder"),
    (  # its runs' cluster runtimes would be lost with it
        "estimate over another experiment's",
        lambda t, r: estimate_into(_text_as(_folder(t / "out") / "estimate.csv", OTHER_ESTIMATE)),
        "holds the estimate of another experiment (its run results/paper/mnist/vae/d16/k0/s0 is not in results/five-quick/)",
    ),
]
OTHER_ESTIMATE = "run_dir,estimate_key,predicted_train_s\nresults/paper/mnist/vae/d16/k0/s0,0123456789ab,60\n"


def time_steps(dataset: str, out: Path) -> list:
    points = '[{"model": "vae", "latent_dim": 2}]'
    return ["time-steps", "--dataset", dataset, "--points", points, "--rounds", 2, "--device", "cpu", "--out", out]


def estimate_into(made: Path) -> list:
    """`five estimate` of the quick config into the folder holding `made`."""
    return ["estimate", "--configfile", ROOT / "config" / "quick.yaml", "--device", "cpu", "--out-dir", made.parent]


def _bytes_as(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _linked(path: Path, target: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:100])
    return path


def _text(path: Path) -> Path:
    path.write_text("not what it should be\n")
    return path


def _fifo_uri(tmp_path: Path) -> str:
    os.mkfifo(tmp_path / "my fifo")
    return (tmp_path / "my fifo").as_uri()  # file:///…/my%20fifo


def _dangling(tmp_path: Path) -> Path:
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    return tmp_path / "dangling"


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _zip_of(path: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _text_as(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _with(array, value, count):
    array = array.copy()
    array.flat[:count] = value
    return array


@pytest.mark.parametrize("builder, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_clear_line_with_exit_code_2(builder, expected, trained, tmp_path):
    argv = builder(tmp_path, trained)
    code, out, err = run_cli(argv)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert out == "", out  # refused before any work, whose progress goes to stdout
    assert len(lines) == 1 and lines[0].startswith("five: error: "), err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err and "weights_only" not in err


TRAIN_CASES_OUT_OF_A_NEW_FOLDER = [
    "npz truncated",
    "npz NaN",
    "npz missing",
    "dataset unknown",
    "hidden width beyond torch's sizes",
    "hidden width whose layer overflows",
    "threads beyond the CPUs",
]


@pytest.mark.parametrize("case", TRAIN_CASES_OUT_OF_A_NEW_FOLDER)
def test_a_refused_training_leaves_no_run_folder(case, trained, tmp_path):
    """The refusal comes before the run folder exists (a name no loader knows, a missing file) or the folder
    made for it, holding only its lock, is removed: nothing is left that looks like a run."""
    argv = dict((c[0], c[1]) for c in CASES)[case](tmp_path, trained)
    assert argv[-1] == tmp_path / "o"
    code, _, err = run_cli(argv)
    assert code == 2, err
    assert not (tmp_path / "o").exists(), sorted((tmp_path / "o").iterdir())


@pytest.mark.parametrize("variable", ["/dev/null", "FIFO"])
def test_a_download_into_a_bad_data_dir_from_the_environment_names_the_variable(monkeypatch, tmp_path, variable):
    """$FIVE_DATA_DIR chose the folder, not --data-dir: the one line says which, so the user fixes the right one."""
    if variable == "FIFO":
        variable = tmp_path / "fifo"
        os.mkfifo(variable)
    monkeypatch.setenv("FIVE_DATA_DIR", str(variable))
    code, _, err = run_cli(["download", "--dataset", "mnist"])
    assert (
        code == 2
        and err.strip()
        == f"five: error: $FIVE_DATA_DIR {variable} is a {'device' if variable == '/dev/null' else 'FIFO'}, not a folder"
    ), err


def _first_moment(state: dict) -> dict:
    return next(iter(state["optimizer"]["state"].values()))


# (name, edit of the trained run's checkpoint.pt, cause in the line): a resumed run would have failed in a
# traceback before
CHECKPOINT_EDITS = [
    ("no optimizer", lambda s: s.pop("optimizer"), "it lacks optimizer"),
    ("no wall time", lambda s: s.pop("wall_time_s"), "it lacks wall_time_s"),
    ("history null", lambda s: s.update(history=None), "its history is not a list"),
    ("history a string", lambda s: s.update(history="abc"), "its history is not a list"),
    ("history epoch a string", lambda s: s.update(history=[{"epoch": "x"}]), "its history is not a list"),
    ("wall time a string", lambda s: s.update(wall_time_s="abc"), "its wall time is not a finite number"),
    ("wall time nan", lambda s: s.update(wall_time_s=float("nan")), "its wall time is not a finite number"),
    ("wall time a matrix", lambda s: s.update(wall_time_s=torch.zeros(2, 2)), "its wall time is not a finite number"),
    ("cuda graph a string", lambda s: s.update(cuda_graph="yes"), "its cuda_graph is not a bool"),
    ("Adam step negative", lambda s: _first_moment(s).update(step=torch.tensor(-5.0)), "a negative step"),
    ("Adam second moment negative", lambda s: _first_moment(s)["exp_avg_sq"].fill_(-1.0), "negative step or second"),
    ("Adam step a string", lambda s: _first_moment(s).update(step="x"), "not Adam's"),
    ("Adam step null", lambda s: _first_moment(s).update(step=None), "not Adam's"),
    ("Adam state a list", lambda s: s["optimizer"].update(state=[1]), "not Adam's"),
]


@pytest.mark.parametrize("edit, cause", [c[1:] for c in CHECKPOINT_EDITS], ids=[c[0] for c in CHECKPOINT_EDITS])
def test_a_resume_from_a_hand_edited_checkpoint_is_one_line_before_training(trained, tmp_path, edit, cause):
    run = with_state(trained, tmp_path, "checkpoint.pt", edit)
    before = {name: (run / name).read_bytes() for name in ("checkpoint.pt", "best.pt", "train.json")}
    argv = train_with("--hidden-width", 8, "--epochs", 2, out=run)
    code, out, err = run_cli(argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "checkpoint.pt" in err and cause in err, err
    assert {name: (run / name).read_bytes() for name in before} == before  # nothing lost


def test_a_run_on_an_npz_goes_on_only_on_the_contents_it_was_trained_on(tmp_path):
    """The same arrays saved again resume; other contents under the same name are refused, for training and
    for evaluation (they were continued and tabled as the run's result, an NLL of millions of nats)."""
    rng = np.random.default_rng(0)
    arrays = {"train": rng.normal(size=(40, 4)).astype(np.float32), "test": rng.normal(size=(10, 4)).astype(np.float32)}
    data, run = npz(tmp_path, **arrays), tmp_path / "run"
    assert run_cli(train_on(data) + [run, "--hidden-width", 8])[0] == 0
    npz(tmp_path, **arrays)  # written again: other bytes on disk, the same data
    code, _, err = run_cli(train_on(data) + [run, "--hidden-width", 8, "--epochs", 2])
    assert code == 0, err
    npz(tmp_path, train=arrays["train"] + 100, test=arrays["test"])
    before = {name: (run / name).read_bytes() for name in ("checkpoint.pt", "train.json")}
    for argv in (  # go on; the finished run again (it said "done", exit 0); a schedule edit that would keep it
        train_on(data) + [run, "--hidden-width", 8, "--epochs", 3],
        train_on(data) + [run, "--hidden-width", 8, "--epochs", 2],
        train_on(data) + [run, "--hidden-width", 8, "--epochs", 2, "--eval-every", 2, "--restart-if-changed"],
        evaluate(run, out=tmp_path / "e.json"),
    ):
        code, _, err = run_cli(argv)
        assert code == 2 and err.count("\n") == 1 and "was trained on other contents of" in err, (argv, err)
    assert {name: (run / name).read_bytes() for name in before} == before and not (tmp_path / "e.json").exists()
    # another configuration is no run kept on the new contents: --restart-if-changed moves it aside and trains anew
    code, out, err = run_cli(train_on(data) + [run, "--hidden-width", 8, "--lr", 1e-3, "--restart-if-changed"])
    assert code == 0 and "moved" in out + err and list((run / ".superseded").iterdir()), err
    data.unlink()  # a finished run needs no data: kept as it is, as before the contents check
    code, out, err = run_cli(train_on(data) + [run, "--hidden-width", 8, "--lr", 1e-3, "--restart-if-changed"])
    assert code == 0 and "nothing to do" in out + err, out + err


def test_whole_numbers_without_levels_are_noted_as_training_starts_and_no_refusal_grows_a_line(tmp_path):
    """The note that whole numbers without discrete_levels are modelled as continuous is logged when training
    starts, not as the file loads: a refusal after loading stays one line."""
    data = npz(tmp_path, train=np.zeros((20, 4), np.uint8), test=np.ones((10, 4), np.uint8))
    code, _, err = run_cli(
        train_on(data) + [tmp_path / "bad", "--hidden-width", 8, "--model", "five", "--latent-dim", 6]
    )
    assert code == 2 and err.count("\n") == 1 and "latent" in err, err
    code, out, err = run_cli(train_on(data) + [tmp_path / "run", "--hidden-width", 8])
    assert code == 0 and out.count("holds whole numbers only and no discrete_levels") == 1, out + err
    code, out, err = run_cli(evaluate(tmp_path / "run", out=tmp_path / "e.json"))  # its progress is on stderr
    assert code == 0 and (out + err).count("holds whole numbers only and no discrete_levels") == 1, out + err


def test_a_data_dir_from_the_environment_that_no_path_can_be_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("FIVE_DATA_DIR", str(tmp_path / IMPOSSIBLE_NAME))
    code, out, err = run_cli(train_with("--dataset", "mnist", out=tmp_path / "o"))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "holds a name of 300 bytes" in err and not (tmp_path / "o").exists(), err


def _lock_link(t):
    (t / "precious.txt").write_text("precious\n")
    (t / "locks").mkdir()
    (t / "locks/gpu0.lock").symlink_to(t / "precious.txt")
    return t / "locks"


def _lock_fifo(t):
    (t / "locks").mkdir()
    os.mkfifo(t / "locks/gpu0.lock")
    return t / "locks"


def _lock_dir_file(t):
    (t / "locks").write_text("a file")
    return t / "locks"


# (name, environment, lock folder, expected line): a job that would claim a GPU (`--device auto`, a GPU faked
# with $FIVE_GPU_COUNT) refuses what it would lock, create or parse, before any work
GPU_LOCK_CASES = [
    ("lock is a link", {"FIVE_GPU_COUNT": "1"}, _lock_link, "gpu0.lock is a link; five writes only regular files"),
    ("lock is a FIFO", {"FIVE_GPU_COUNT": "1"}, _lock_fifo, "gpu0.lock is a FIFO; five writes only regular files"),
    ("lock folder is a file", {"FIVE_GPU_COUNT": "1"}, _lock_dir_file, "--gpu-lock-dir"),
    ("lock folder is a device", {"FIVE_GPU_COUNT": "1"}, lambda t: Path("/dev/null"), "/dev/null is a device"),
    ("lock folder is a device, no GPU", {"FIVE_GPU_COUNT": "0"}, lambda t: Path("/dev/null"), "is a device"),
    ("GPU count not a number", {"FIVE_GPU_COUNT": "abc"}, lambda t: t / "locks", "$FIVE_GPU_COUNT is 'abc'"),
    ("GPU count negative", {"FIVE_GPU_COUNT": "-1"}, lambda t: t / "locks", "not a number of GPUs"),
    ("GPU count absurd", {"FIVE_GPU_COUNT": "10" * 20}, lambda t: t / "locks", "not a number of GPUs"),
    ("GPU count a superscript", {"FIVE_GPU_COUNT": "²"}, lambda t: t / "locks", "not a number of GPUs"),
    ("GPU count 5000 digits", {"FIVE_GPU_COUNT": "9" * 5000}, lambda t: t / "locks", "not a number of GPUs"),
    (
        "device id too long for a lock's name",
        {"FIVE_GPU_COUNT": "1", "CUDA_VISIBLE_DEVICES": LONG_NAME},
        lambda t: t / "locks",
        "the GPU lock",
    ),
]


@pytest.mark.parametrize("name, environment, lock_dir, expected", GPU_LOCK_CASES, ids=[c[0] for c in GPU_LOCK_CASES])
def test_a_gpu_lock_that_is_no_regular_file_or_a_bad_gpu_count_is_one_line(
    name, environment, lock_dir, expected, trained, tmp_path, monkeypatch
):
    """The lock holder writes its process id into the lock: through a link it would overwrite the link's
    target, on a FIFO it would fail in a traceback."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    run = copy_run(trained, tmp_path)
    argv = ["evaluate", "--run", run, "--importance-samples", 2, "--device", "auto"]
    code, out, err = run_cli([*argv, "--gpu-lock-dir", lock_dir(tmp_path), "--out", tmp_path / "e.json"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "e.json").exists()
    if (tmp_path / "precious.txt").exists():
        assert (tmp_path / "precious.txt").read_text() == "precious\n"


def test_a_device_id_with_slashes_locks_a_file_inside_the_lock_folder(tmp_path, monkeypatch):
    """Old-style MIG ids (MIG-GPU-<uuid>/1/0) hold slashes; pasted into the lock's name they made folders that
    are not there (a traceback) or a path outside the lock folder."""
    from five.run import gpus

    for device in ("MIG-GPU-1234/1/0", "../../escaped"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", device)
        assert gpus.claim_gpu(tmp_path / "locks", log=lambda line: None) == device
        gpus._held.pop().close()  # release it, as the job's end would
    locks = list(tmp_path.rglob("*.lock"))
    assert len(locks) == 2 and all(path.parent == tmp_path / "locks" for path in locks), locks


def test_a_step_timed_with_a_batch_beyond_the_data_is_timed_at_the_batch_training_runs(tmp_path):
    """Training draws at most all its examples per step; the timing asked for 10^11 rows (800 GB)."""
    points = '[{"model": "vae", "latent_dim": 2, "batch_size": 100000000000, "hidden_width": 8}]'
    argv = ["time-steps", "--dataset", "digits", "--points", points, "--rounds", 2, "--device", "cpu"]
    code, _, err = run_cli([*argv, "--out", tmp_path / "t.csv"])
    assert code == 0, err
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 3  # a header and 2 rounds


@pytest.mark.parametrize("history", [[1], [], [{"loss": 1.0}], None], ids=["numbers", "empty", "no epoch", "null"])
def test_a_finished_runs_history_not_as_five_writes_it_is_one_line(trained, tmp_path, history):
    """A finished run is kept as it is, and its history reported: a list of numbers failed in a traceback after
    'nothing to do', an empty one was kept as a finished run without a single epoch."""
    run = copy_run(trained, tmp_path)
    _edited_json(run / "train.json", lambda record: record.update(history=history))
    argv = ["train", "--model", "vae", "--dataset", "digits", "--latent-dim", 2, "--epochs", 1, "--device", "cpu"]
    code, out, err = run_cli([*argv, "--out", run])
    assert code == 2 and err.strip().splitlines() == [err.strip()], err
    assert "train.json is damaged: its history is missing or not as five writes it" in err, err


def test_a_refused_training_keeps_a_folder_that_was_there(trained, tmp_path):
    (tmp_path / "o").mkdir()  # empty: only a folder made by the refused run is removed
    code, _, _ = run_cli(train_with("--hidden-width", 3037000500, out=tmp_path / "o"))  # refused once locked
    assert code == 2
    assert (tmp_path / "o").is_dir()


def test_the_largest_torch_seed_is_a_valid_setting():
    from five.base.config import TrainConfig

    assert TrainConfig(model="vae", dataset="digits", latent_dim=2, seed=2**64 - 1).seed == 2**64 - 1


def assert_recorded_as_diverged(run: Path, code: int, err: str, cause: str) -> None:
    """A run whose evaluation found no finite likelihood bound: exit 0, one line saying so (no traceback), and an
    eval.json of status diverged naming the cause and the checkpoint it evaluated, which the tables mark."""
    assert code == 0, err
    assert f"{run}: no likelihood bound on the test split at epoch 1: " in err and "recorded as diverged" in err, err
    assert "Traceback" not in err
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["status"] == "diverged" and cause in evaluation["error"], evaluation
    assert evaluation["nll_nats"] is None and evaluation["checkpoint_epoch"] == 1, evaluation
    assert evaluation["model_selection"] == "best" and evaluation["split"] == "test"


@pytest.mark.parametrize("weight", ["decoder.4.weight", "head.weight"])
def test_an_evaluation_that_overflows_is_recorded_as_a_divergence(trained, tmp_path, weight):
    """Finite weights so large that an activation overflows (in the decoder: the NLL; in the encoder's head: the
    posterior): the model has no finite likelihood bound, which training would have recorded as a divergence at
    validation; the evaluation records it so (the sweep goes on, the tables mark it), and an evaluation of
    another run in the same call is made as alone."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    good = copy_run(trained, tmp_path / "a")
    run = with_state(trained, tmp_path / "b", "best.pt", lambda s: s["model"][weight].fill_(1e30))
    argv = ["evaluate", "--run", run, good, "--importance-samples", 2, "--device", "cpu"]
    code, _, err = run_cli(argv + ["--out", run / "eval.json", good / "eval.json"])
    assert_recorded_as_diverged(run, code, err, "the likelihood pass gave nan or inf for ")
    alone = tmp_path / "alone.json"
    assert run_cli(evaluate(good, out=alone))[0] == 0
    packed, solo = (json.loads(path.read_text()) for path in (good / "eval.json", alone))
    assert packed["status"] == "complete" and packed["nll_nats"] == solo["nll_nats"]


def test_a_packed_evaluation_checks_every_run_first(trained, tmp_path):
    """The second seed's broken checkpoint is refused before the first seed is evaluated (the workflow's job
    would lose the first's eval.json with the failed job)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    good = copy_run(trained, tmp_path / "a")
    bad = with_state(trained, tmp_path / "b", "best.pt", lambda s: s["model"]["head.bias"].fill_(float("nan")))
    code, _, err = run_cli(
        [
            "evaluate",
            "--run",
            good,
            bad,
            "--importance-samples",
            2,
            "--device",
            "cpu",
            "--out",
            good / "eval.json",
            bad / "eval.json",
        ]
    )
    assert code == 2 and err.strip().splitlines() == [err.strip()], err
    assert "holds nan or inf in head.bias" in err and "evaluated batch" not in err
    assert not (good / "eval.json").exists()


def test_a_packed_evaluation_checks_every_record_first(trained, tmp_path):
    """The second seed's train.json describes another run than its checkpoint: refused before the first seed
    is evaluated."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    good = copy_run(trained, tmp_path / "a")
    bad = copy_run(trained, tmp_path / "b")
    record = json.loads((bad / "train.json").read_text())
    edited_record(bad, config=record["config"] | {"latent_dim": 3})
    argv = ["evaluate", "--run", good, bad, "--importance-samples", 2, "--device", "cpu"]
    code, _, err = run_cli(argv + ["--out", good / "eval.json", bad / "eval.json"])
    assert code == 2 and "holds two different runs" in err and "evaluated batch" not in err, err
    assert not (good / "eval.json").exists()


@pytest.mark.parametrize("model", ["fif", "five"])
def test_a_posterior_without_a_cholesky_factor_is_recorded_as_a_divergence(model, tmp_path):
    """FIF/FIVE with finite but huge weights: the Jacobian overflows and s·J_f J_fᵀ has no Cholesky factor: no
    likelihood bound, recorded as diverged (as training records it at validation), not linalg's traceback."""
    run = tmp_path / "run"
    code, _, err = run_cli(train_with("--model", model, "--hidden-width", 8, out=run))
    assert code == 0, err
    state = torch.load(run / "best.pt", weights_only=True)
    state["model"] = {k: v * 1e30 if k != "log_sigma" else v for k, v in state["model"].items()}
    torch.save(state, run / "best.pt")
    code, _, err = run_cli(evaluate(run))
    assert_recorded_as_diverged(run, code, err, "no Cholesky factor")


def test_a_sigma_at_the_floor_of_continuous_data_is_warned_of(trained, tmp_path):
    """A learned σ at the floor of continuous data (1e-3 in the data's units) caps the likelihood where the data's
    noise is smaller (data at spread 1e-4 end there, their NLL far too high): the evaluation says so in its log and
    eval.json. Not where σ lies above it, where a fitted σ moved off it, nor at a discrete data set's floor."""
    rng = np.random.default_rng(0)
    data = npz(tmp_path, train=rng.normal(size=(200, 4)), test=rng.normal(size=(20, 4)))
    code, _, err = run_cli(train_on(data) + [tmp_path / "run", "--hidden-width", 8])
    assert code == 0, err
    floor = CONTINUOUS_LOG_SIGMA_FLOOR
    for case, (log_sigma, warned) in enumerate([(floor, True), (floor + 0.005, True), (floor + 0.05, False)]):
        (tmp_path / f"case{case}").mkdir()
        set_sigma = lambda state: state["model"]["log_sigma"].fill_(log_sigma)  # noqa: E731
        run = with_state(tmp_path / "run", tmp_path / f"case{case}", "best.pt", set_sigma)
        code, out, err = run_cli(evaluate(run))
        assert code == 0, err
        evaluation = json.loads((run / "eval.json").read_text())
        assert ("sigma_warning" in evaluation) == warned and ("sits at the floor" in out + err) == warned, out + err
    code, out, err = run_cli(evaluate(run, "--sigma", "fitted", "--importance-samples", 20))  # data noise ≈ 1
    assert code == 0 and json.loads((run / "eval.json").read_text())["sigma"] > 0.01, err  # off the floor
    assert "sits at the floor" not in out + err and "sigma_warning" not in (run / "eval.json").read_text()
    (tmp_path / "digits").mkdir()
    at_floor = with_state(trained, tmp_path / "digits", "best.pt", lambda s: s["model"]["log_sigma"].fill_(-4.0761))
    code, out, err = run_cli(evaluate(at_floor))  # digits: L = 17, floor log(1/(17·√12)) ≈ −4.0761
    assert code == 0 and "sits at the floor" not in out + err, err


def test_the_floor_warning_is_for_a_sigma_that_training_or_fitting_floors(tmp_path):
    """FIF's own σ is fixed by β (σ = 1/√(2β)) and never floored: below 1e-3 (β = 1e8) it is no σ at the floor; a
    σ fitted for FIF is searched above the floor and can end on it. A σ set below the floor by hand is not at it."""
    from five.base.config import TrainConfig
    from five.data.datasets import load_dataset
    from five.model.models import build_model
    from five.run.evaluate import sigma_floor_warning

    rng = np.random.default_rng(0)
    dataset = load_dataset(f"npz:{npz(tmp_path, train=rng.normal(size=(50, 4)), test=rng.normal(size=(10, 4)))}")

    def warned(model_name, policy, log_sigma=None, **settings):
        config = TrainConfig(model=model_name, dataset=dataset.name, latent_dim=2, hidden_width=8, **settings)
        model = build_model(config, dataset)
        if log_sigma is not None:
            model.set_log_sigma(log_sigma)
        return bool(sigma_floor_warning(model, dataset, policy))

    floor = CONTINUOUS_LOG_SIGMA_FLOOR
    assert not warned("fif", "fixed", beta=5e5) and not warned("fif", "fixed", beta=1e8)  # σ = 1e-3, and below
    assert warned("fif", "fitted", floor, beta=10.0) and warned("vae", "learned", floor)
    assert not warned("vae", "learned", -20.0) and not warned("vae", "learned", floor + 0.05)


def test_an_own_sigma_far_below_the_floor_is_still_fitted(trained, tmp_path):
    """log σ = −20, far below the data set's floor (not a σ training leaves, but a valid one): `--sigma fitted`
    searches above the floor instead of failing on an empty interval."""
    run = with_state(trained, tmp_path, "best.pt", lambda s: s["model"]["log_sigma"].fill_(-20.0))
    code, _, err = run_cli(evaluate(run, "--sigma", "fitted"))
    assert code == 0, err
    fit = json.loads((run / "eval.json").read_text())["sigma_fit"]
    low, high = fit["search_bounds"]
    assert low < high and low > -20


def test_an_evaluation_of_one_example_is_refused_before_it_runs(tmp_path):
    """A split of one example has a posterior-mean variance of 0 in every direction, so it would count 0 active
    units: `five evaluate --split` of it is refused in one line (a test split of one is refused at loading)."""
    rng = np.random.default_rng(0)
    data = npz(
        tmp_path, train=rng.normal(size=(40, 4)).astype(np.float32), validation=GOOD["test"][:1], test=GOOD["test"]
    )
    code, _, err = run_cli(train_on(data) + [tmp_path / "run"])
    assert code == 0, err
    code, _, err = run_cli(evaluate(tmp_path / "run", "--split", "validation"))
    assert code == 2 and "split 'validation' of npz:" in err and "holds 1 example" in err
    assert not (tmp_path / "run" / "eval.json").exists()


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


def test_a_refused_input_leaves_the_run_untouched(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    code, _, _ = run_cli(evaluate(run, out=run / "checkpoint.pt"))
    assert code == 2
    assert {path.name: path.read_bytes() for path in run.iterdir()} == before
    # nothing of the evaluation was computed: no eval.json, and the refusal came before any model was built
    assert not (run / "eval.json").exists() and json.loads((run / "train.json").read_text())["status"] == "complete"


def test_a_packed_evaluation_checks_that_every_runs_weights_fit_first(trained, tmp_path):
    """The second seed's checkpoint holds a layer of another shape (a valid, finite state of another network):
    refused before the first seed is evaluated, as the other checks are."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    good = copy_run(trained, tmp_path / "a")
    bad = with_state(trained, tmp_path / "b", "best.pt", lambda s: s["model"].__setitem__("head.bias", torch.zeros(7)))
    argv = ["evaluate", "--run", good, bad, "--importance-samples", 2, "--device", "cpu"]
    code, _, err = run_cli(argv + ["--out", good / "eval.json", bad / "eval.json"])
    assert code == 2 and err.strip().splitlines() == [err.strip()], err
    assert "best.pt does not fit this model" in err and "evaluated batch" not in err, err
    assert not (good / "eval.json").exists()


def test_an_evaluation_never_writes_onto_another_runs_files_or_images(trained, tmp_path):
    """Two runs in one call: an --out onto the other run's best.pt, or onto the image grid of an --image-dir of
    the call, is refused before anything is evaluated, and the file is left as it was."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = copy_run(trained, tmp_path / "a"), copy_run(trained, tmp_path / "b")
    before = (second / "best.pt").read_bytes()
    argv = ["evaluate", "--run", first, second, "--importance-samples", 2, "--device", "cpu"]
    code, _, err = run_cli(argv + ["--out", second / "best.pt", first / "eval.json"])
    assert code == 2 and "is named as a training run's own best.pt" in err and "evaluated batch" not in err, err
    assert (second / "best.pt").read_bytes() == before
    images = [tmp_path / "img1", tmp_path / "img2"]
    code, _, err = run_cli(argv + ["--out", images[1] / "samples.png", first / "eval.json", "--image-dir", *images])
    assert code == 2 and "would overwrite samples.png, which this command" in err and "evaluated batch" not in err, err


def test_image_grids_of_flat_data_are_refused_for_every_run_before_the_first_is_evaluated(trained, tmp_path):
    manifold_run = tmp_path / "m"
    code, _, err = run_cli(train_with("--dataset", "manifold", "--hidden-width", 8, out=manifold_run))
    assert code == 0, err
    (tmp_path / "a").mkdir()
    good = copy_run(trained, tmp_path / "a")
    argv = ["evaluate", "--run", good, manifold_run, "--importance-samples", 2, "--device", "cpu"]
    outs = ["--out", tmp_path / "e1.json", tmp_path / "e2.json", "--image-dir", tmp_path / "i1", tmp_path / "i2"]
    code, _, err = run_cli(argv + outs)
    assert code == 2 and "image grids need images or a square number of dimensions" in err, err
    assert "evaluated batch" not in err and not (tmp_path / "e1.json").exists()


@pytest.mark.parametrize("kind", ["file", "fifo"])
def test_a_cache_dir_that_is_not_a_folder_is_one_line_before_compute(trained, tmp_path, kind):
    cache = tmp_path / "cache"
    cache.write_text("x") if kind == "file" else os.mkfifo(cache)
    code, _, err = run_cli(evaluate(copy_run(trained, tmp_path), "--cache-dir", cache))
    assert code == 2 and err.strip().splitlines() == [err.strip()] and "--cache-dir" in err, err


@pytest.mark.parametrize("kind", ["fifo", "folder", "link to a device"])
def test_a_cache_file_that_is_not_a_regular_file_is_one_line_before_compute(trained, tmp_path, kind):
    """A FIFO in the true posterior's place blocked the job forever, after its whole evaluation."""
    cache = tmp_path / "cache"
    cache.mkdir()
    place = cache / "manifold-true-posterior-0123456789abcdef0123.pt"
    {"fifo": os.mkfifo, "folder": Path.mkdir, "link to a device": lambda p: p.symlink_to("/dev/zero")}[kind](place)
    run = copy_run(trained, tmp_path)
    code, out, err = run_cli(evaluate(run, "--cache-dir", cache))
    assert code == 2 and err.strip().splitlines() == [err.strip()] and "--cache-dir file" in err, err
    assert out == "" and not (run / "eval.json").exists()


@pytest.mark.parametrize(
    "uri, cause",
    [
        ("file:{tmp}/mlruns", "MLFLOW_TRACKING_URI 'file:{tmp}/mlruns' is MLflow's file store"),
        ("bogus://x", "MLFLOW_TRACKING_URI 'bogus://x' has the unknown scheme 'bogus'"),
        ("sqlite:///{tmp}/text.db", "{tmp}/text.db is not an SQLite database; name another file"),
        ("sqlite:///{tmp}/a\nb.db", "holds a control character"),
        ("sqlite://", "MLFLOW_TRACKING_URI 'sqlite://' names no database file"),
        ("http://", "MLFLOW_TRACKING_URI 'http://' names no server (no host or a malformed one)"),
        ("http://[::1:5000", "MLFLOW_TRACKING_URI 'http://[::1:5000' names no server"),  # urlparse: ValueError
        # taken for a server that is down (each job untracked, exit 0); the driver named is one installed nowhere
        ("postgresql+five_no_such_driver://u@h/db", "is no database URL SQLAlchemy reads (Can't load plugin"),
        ("postgresql://u@h:port/db", "is no database URL SQLAlchemy reads"),
        ("sqlite:///:memory:", "MLFLOW_TRACKING_URI 'sqlite:///:memory:' names no database file"),
        ("sqlite:////dev/null", "/dev/null is a device; the SQLite database and its files must be regular"),
        ("sqlite+pysqlite:////dev/null", "/dev/null is a device; the SQLite database and its files must be"),
        ("sqlite:///{tmp}", "{tmp} is a folder; the SQLite database"),
        ("sqlite:///{tmp}/fifo.db", "{tmp}/fifo.db-journal is a FIFO; the SQLite database"),
    ],
    ids=[
        "file store",
        "unknown scheme",
        "not a database",
        "a newline",
        "in memory",
        "a server without host",
        "a server of a malformed host",
        "a database driver SQLAlchemy lacks",
        "a database server's malformed port",
        "in memory, named",
        "a device",
        "a device, with a driver",
        "a folder",
        "a FIFO journal",
    ],
)
@pytest.mark.parametrize("command", ["mlflow-init", "mlflow-sync"])
def test_the_mlflow_commands_say_what_is_wrong_with_the_store_in_one_line(
    trained, tmp_path, monkeypatch, uri, cause, command
):
    (tmp_path / "text.db").write_text("not a database")
    os.mkfifo(tmp_path / "fifo.db-journal")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri.format(tmp=tmp_path))
    argv = [command, "--experiment", "x"] + ([copy_run(trained, tmp_path)] if command == "mlflow-sync" else [])
    code, _, err = run_cli(argv)
    assert code == 2 and err.strip().splitlines() == [err.strip()], err
    assert cause.format(tmp=tmp_path) in err, err


@pytest.mark.parametrize("where", ["newrun/m.db", "newrun"], ids=["in the new run's folder", "as the new run's folder"])
def test_a_tracking_database_in_the_place_of_the_run_a_job_makes_is_refused(tmp_path, monkeypatch, where):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / where}")
    argv = ["train", "--model", "vae", "--dataset", "digits", "--latent-dim", "2", "--epochs", "1", "--device", "cpu"]
    code, out, err = run_cli([*argv, "--mlflow-experiment", "x", "--out", tmp_path / "newrun"])
    assert code == 2 and err.strip().splitlines() == [err.strip()], err
    assert f"the tracking database {tmp_path / where} lies in the run folder {tmp_path / 'newrun'}" in err, err
    assert out == "" and not (tmp_path / "newrun").exists()


@pytest.mark.parametrize("command", ["train", "evaluate", "mlflow-init", "mlflow-sync"])
def test_a_tracking_database_inside_a_run_folder_is_refused(trained, tmp_path, monkeypatch, command):
    """The database and the journals SQLite keeps beside it would lie among a run's files."""
    run = copy_run(trained, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{run / 'm.db'}")
    argv = {
        "train": ["train", "--model", "vae", "--dataset", "digits", "--latent-dim", "2", "--epochs", "1"]
        + ["--device", "cpu", "--mlflow-experiment", "x", "--out", tmp_path / "new"],
        "evaluate": evaluate(run, "--mlflow-experiment", "x", out=tmp_path / "e.json"),
        "mlflow-init": ["mlflow-init", "--experiment", "x"],
        "mlflow-sync": ["mlflow-sync", "--experiment", "x", run],
    }[command]
    code, out, err = run_cli(argv)
    assert code == 2 and err.strip().splitlines() == [err.strip()], err
    assert "the tracking database" in err and "lies in the run folder" in err, err
    assert out == "" and not (run / "m.db").exists()


@pytest.mark.parametrize("uri", ["sqlite://", "sqlite:////dev/null", "sqlite:///{tmp}"])
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_job_logging_to_a_database_that_is_no_file_is_refused_before_compute(
    trained, tmp_path, monkeypatch, uri, command
):
    """SQLite writes its pages onto whatever the path names (a device too) and retries a folder for minutes."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri.format(tmp=tmp_path))
    run = copy_run(trained, tmp_path)
    argv = evaluate(run, "--mlflow-experiment", "x") if command == "evaluate" else None
    if command == "train":
        argv = ["train", "--model", "vae", "--dataset", "digits", "--latent-dim", "2", "--epochs", "1"]
        argv += ["--device", "cpu", "--mlflow-experiment", "x", "--out", tmp_path / "new"]
    code, out, err = run_cli(argv)
    assert code == 2 and err.strip().splitlines() == [err.strip()] and "MLFLOW_TRACKING_URI" in err, err
    assert out == "" and not (tmp_path / "new").exists() and not (run / "eval.json").exists()


def _edited_json(path: Path, edit) -> None:
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


@pytest.mark.parametrize(
    "damage, cause",
    [
        (lambda run: _edited_json(run / "eval.json", lambda e: e["config"].update(latent_dim=3)), "latent_dim = 3"),
        (lambda run: _edited_json(run / "eval.json", lambda e: e.update(checkpoint_epoch=7)), "evaluated epoch 7"),
        (lambda run: (run / "eval.json").write_text(""), "eval.json is damaged: not valid JSON"),
        (lambda run: _edited_json(run / "train.json", lambda r: r.update(history=[5])), "history is missing or not"),
        (lambda run: _edited_json(run / "eval.json", lambda e: e.update(nll_nats="x")), "eval.json is damaged: nll"),
        (lambda run: _edited_json(run / "eval.json", lambda e: e.update(config=5)), "eval.json is damaged: its con"),
    ],
    ids=[
        "another run's evaluation",
        "an older checkpoint's",
        "an empty eval.json",
        "a history of numbers",
        "a word for the NLL",
        "a number for the config",
    ],
)
def test_mlflow_sync_checks_a_run_folder_before_it_logs_anything(trained, tmp_path, monkeypatch, damage, cause):
    """It logged another run's eval.json under this run's tags, and left a RUNNING run behind a damaged file."""
    run = copy_run(trained, tmp_path)
    assert run_cli(evaluate(run))[0] == 0
    shutil.copytree(run, tmp_path / "good")  # given first: not logged either, every folder is checked first
    damage(run)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    code, out, err = run_cli(["mlflow-sync", "--experiment", "x", tmp_path / "good", run])
    assert code == 2 and err.strip().splitlines() == [err.strip()] and cause in err, err
    assert out == "" and not (tmp_path / "m.db").exists()
    if "eval.json is damaged" in cause:  # only the evaluation is made again, never the training
        assert "evaluate the run again" in err and "retrain" not in err, err


@pytest.mark.parametrize(
    "swapped, name",
    [(True, "eval.json"), (False, "eval.json"), (False, "train.done"), (False, "grids/e.json"), (False, "grids")],
    ids=[
        "swapped in one command",
        "another run's eval.json",
        "another run's stamp",
        "inside another run's folder",
        "into another run's grids",
    ],
)
def test_an_evaluation_is_never_written_into_another_runs_folder(trained, tmp_path, swapped, name):
    first, second = copy_run(trained, tmp_path), tmp_path / "second"
    (second / "grids").mkdir(parents=True)
    (second / "train.json").write_bytes((first / "train.json").read_bytes())
    (second / "train.done").touch()
    argv = evaluate(first, out=second / name)
    if name == "grids":  # the images of `first` would pass for `second`'s
        argv = evaluate(first, "--image-dir", second / name, out=first / "eval.json")
    if swapped:
        argv = ["evaluate", "--run", first, second, "--importance-samples", 2, "--device", "cpu"]
        argv += ["--out", second / "eval.json", first / "eval.json"]
    code, out, err = run_cli(argv)
    assert code == 2 and err.strip().splitlines() == [err.strip()], err
    assert f"lies in the run folder {second.resolve()}," in err, err
    assert out == "" and not (second / "eval.json").exists() and not (first / "eval.json").exists()
    assert (second / "train.done").read_bytes() == b"" and list((second / "grids").iterdir()) == []


def test_a_train_json_that_is_no_run_makes_no_run_folder_and_runs_may_nest(trained, tmp_path):
    """A file named train.json above the outputs (a data split, say) is no run of five's: the evaluation is written
    there. A run folder inside another (a run and one it superseded, compared) is evaluated: runs are only read."""
    (tmp_path / "train.json").write_text('{"images": [1, 2]}')
    outer = copy_run(trained, tmp_path)
    inner = outer / ".superseded" / "20261206-000000"
    inner.mkdir(parents=True)
    for name in ("checkpoint.pt", "best.pt", "train.json"):
        (inner / name).write_bytes((outer / name).read_bytes())
    outs = [tmp_path / "evals" / "outer.json", tmp_path / "evals" / "inner.json"]
    code, _, err = run_cli(evaluate(outer, out=outs[0])[:3] + [inner] + evaluate(outer)[3:-2] + ["--out", *outs])
    assert code == 0, err
    assert [json.loads(path.read_text())["nll_nats"] for path in outs][0] > 0 and outs[1].is_file()


@pytest.mark.parametrize(
    "image_dir, out, overlap",
    [
        ("o.json", "o.json", "--out o.json and --image-dir o.json overlap"),
        ("o.json/sub", "o.json", "--out o.json and --image-dir o.json/sub overlap"),
        ("g", "g/reconstructions.png/x.json", "--image-dir g and --out g/reconstructions.png/x.json overlap"),
    ],
    ids=["the same path", "the grids inside the evaluation", "the evaluation inside a grid"],
)
def test_an_evaluation_and_its_grids_never_lie_in_each_others_place(
    trained, tmp_path, monkeypatch, image_dir, out, overlap
):
    """Each would be written only after the evaluation was computed, the second failing."""
    run = copy_run(trained, tmp_path)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(evaluate(run, "--image-dir", image_dir, out=out))
    assert code == 2 and err.strip().splitlines() == [err.strip()] and overlap in err, err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize("key", ["", "  "])
def test_an_empty_mlflow_run_key_is_refused_not_taken_for_the_run_folder(trained, tmp_path, key):
    run = copy_run(trained, tmp_path)
    code, out, err = run_cli(evaluate(run, "--mlflow-experiment", "x", "--mlflow-run-key", key))
    assert code == 2 and err.strip().splitlines() == [err.strip()] and "an empty key was given" in err, err
    assert out == "" and not (run / "eval.json").exists()


def test_an_experiment_name_mlflow_would_refuse_is_refused_in_one_line():
    code, _, err = run_cli(["mlflow-init", "--experiment", "x" * 501])
    assert code == 2 and "a name of 501 characters (MLflow takes at most 500)" in err, err


def test_no_output_replaces_what_the_command_reads(tmp_path, monkeypatch):
    """`five evaluate --out` onto the npz data its run was trained on, or onto the SQLite tracking database it
    logs to (or the journal beside it), is refused before anything is evaluated, and each is left as it was;
    `five estimate` whose estimate.md would be a folder writes no estimate.csv either."""
    data = npz(tmp_path, **GOOD)
    run = tmp_path / "run"
    assert run_cli(train_on(data) + [run])[0] == 0
    before = data.read_bytes()
    code, _, err = run_cli(evaluate(run, out=data))
    assert code == 2 and "would overwrite data.npz" in err and "evaluated batch" not in err, err
    assert data.read_bytes() == before
    database = tmp_path / "m.db"
    database.write_bytes(b"SQLite format 3\x00 and pages")  # what the store's check takes for a database
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")
    for target in (database, tmp_path / "m.db-journal"):
        code, _, err = run_cli(evaluate(run, "--mlflow-experiment", "e", out=target))
        assert code == 2 and f"would overwrite {target.name}" in err, err
    assert database.read_bytes() == b"SQLite format 3\x00 and pages" and not (tmp_path / "m.db-journal").exists()
    code, _, err = run_cli(estimate_into(_folder(tmp_path / "out" / "estimate.md")))
    assert code == 2 and "estimate.md is a folder" in err and not (tmp_path / "out" / "estimate.csv").exists(), err


def test_a_record_without_its_dataset_is_still_evaluated(trained, tmp_path):
    """The weights' own config says the data set; looking in train.json for an npz to protect must not turn a
    record without `dataset` (hand-edited) into a traceback."""
    run = bad_bytes(
        trained, tmp_path, "train.json", lambda p: p.read_text().replace('"dataset":', '"datasett":').encode()
    )
    code, _, err = run_cli(evaluate(run))
    assert code == 0 and (run / "eval.json").is_file(), err


def _dangling(folder):
    (folder / "dangling").symlink_to(folder / "nowhere" / "zz")
    return folder / "dangling"


def _settings_in(folder):
    folder.mkdir()
    (folder / "best.pt").write_text(json.dumps({"model": "vae", "dataset": "digits", "latent_dim": 2, "epochs": 1}))
    return ["train", "--settings", folder / "best.pt", "--seed", 0, "--device", "cpu", "--out", folder]


def _run_with_eval(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    (run / "eval.json").write_text("{}")
    return run


TIMING = ["time-steps", "--dataset", "digits", "--points", '[{"model": "vae", "latent_dim": 2}]', "--device", "cpu"]
# (id, the command from (tmp_path, trained run), the input it must leave as it is, what the one line says)
INPUTS_KEPT = [
    (
        "timing over mnist's files",
        lambda t, r: TIMING[:2]
        + ["mnist", *TIMING[3:], "--data-dir", t, "--out", t / "MNIST/raw/t10k-images-idx3-ubyte"],
        "MNIST/raw/t10k-images-idx3-ubyte",
        "would overwrite t10k-images-idx3-ubyte, which this command reads",
    ),
    (
        "timing over another run's eval.json",
        lambda t, r: TIMING + ["--out", _run_with_eval(r, t) / "eval.json"],
        "run/eval.json",
        "lies in the run folder",
    ),
    ("a run over its own settings", lambda t, r: _settings_in(t / "s"), "s/best.pt", "its best.pt would overwrite"),
    (
        "a run over its own data",
        lambda t, r: train_on(npz(t, "best.pt", **GOOD)) + [t],
        "best.pt",
        "its best.pt would overwrite",
    ),
    (
        "a run over its own data, named another way",
        lambda t, r: train_on(npz(t, "best.pt", **GOOD)) + [t / "elsewhere" / ".."],
        "best.pt",
        "its best.pt would overwrite",
    ),
    (
        "an evaluation into the cache",
        lambda t, r: evaluate(r, "--cache-dir", t / "c", out=t / "c" / "e.json"),
        "c",
        "lies in --cache-dir",
    ),
    (
        "an evaluation onto the artifact store",
        lambda t, r: evaluate(r, "--mlflow-experiment", "e", "--mlflow-artifact-location", t / "a", out=t / "a"),
        "a",
        "and --mlflow-artifact-location",
    ),
    (
        "a cache in another run's folder",
        lambda t, r: evaluate(r, "--cache-dir", _run_with_eval(r, t), out=t / "e.json"),
        "run/eval.json",
        "error: --cache-dir",
    ),
    ("an evaluation into /proc", lambda t, r: evaluate(r, out="/proc/e.json"), "e.json", "cannot be written (/proc:"),
    ("a path of two lines", lambda t, r: evaluate(r, out=t / "a\nb.json"), "e.json", "holds a control character"),
    ("data of two lines", lambda t, r: train_on(f"{t}/a\nb.npz") + [t / "r"], "e.json", "npz data file '"),
]


@pytest.mark.parametrize("build, kept, expected", [case[1:] for case in INPUTS_KEPT], ids=[c[0] for c in INPUTS_KEPT])
def test_no_output_lands_on_an_input_another_output_or_where_it_cannot_be_written(
    trained, tmp_path, monkeypatch, build, kept, expected
):
    """Found by a hostile round: each of these wrote (exit 0) over what it read, or failed after its compute."""
    (tmp_path / "MNIST/raw").mkdir(parents=True)
    (tmp_path / "MNIST/raw/t10k-images-idx3-ubyte").write_bytes(b"images")
    (tmp_path / "c").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    argv = build(tmp_path, trained)
    before = (tmp_path / kept).read_bytes() if (tmp_path / kept).is_file() else None
    code, out, err = run_cli(argv)
    assert code == 2 and err.strip().splitlines() == [err.strip()] and expected in err, err
    assert "evaluated batch" not in out + err and not (tmp_path / "m.db").exists()
    if before is not None:
        assert (tmp_path / kept).read_bytes() == before
    assert sorted(path.name for path in (tmp_path / "c").iterdir()) == []


def test_a_run_never_overwrites_the_tracking_database_it_logs_to(tmp_path, monkeypatch):
    (tmp_path / "r").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'r' / 'best.pt'}")
    code, _, err = run_cli(train_with(out=tmp_path / "r") + ["--mlflow-experiment", "x"])
    assert code == 2 and f"the tracking database {tmp_path / 'r' / 'best.pt'} lies in the run folder" in err, err
    assert list((tmp_path / "r").iterdir()) == []


@pytest.mark.parametrize(
    "uri", ["", "sqlite:///{tmp}/mlflow.db?timeout=30"], ids=["mlflow's default store", "a URI with options"]
)
def test_the_tracking_database_is_kept_however_it_is_named(trained, tmp_path, monkeypatch, uri):
    """MLflow's own default (./mlflow.db where no URI is set) and a URI with `?options` name the database too."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri.format(tmp=tmp_path))
    (tmp_path / "mlflow.db").write_bytes(b"SQLite format 3\0")
    for argv in (TIMING + ["--out", "mlflow.db"], evaluate(copy_run(trained, tmp_path), out=tmp_path / "mlflow.db")):
        code, _, err = run_cli(argv)
        assert code == 2 and "would overwrite mlflow.db, which this command reads" in err, err
    assert (tmp_path / "mlflow.db").read_bytes() == b"SQLite format 3\0"


def test_an_output_anywhere_below_the_cache_but_among_its_files_is_written(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    code, _, err = run_cli(evaluate(run, "--cache-dir", tmp_path, out=run / "eval.json"))
    assert code == 0 and (run / "eval.json").is_file(), err


def test_a_run_named_by_a_relative_path_is_evaluated_into_its_own_folder(trained, tmp_path, monkeypatch):
    """`--run run --out run/eval.json` from the run's parent: its own folder, not another run's."""
    copy_run(trained, tmp_path)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(evaluate("run", out="run/eval.json"))
    assert code == 0 and (tmp_path / "run" / "eval.json").is_file(), err
