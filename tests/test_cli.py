"""The command line contract the workflow calls: `five train` and `five evaluate`, and their one-line errors."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FIVE = shutil.which("five", path=str(Path(sys.executable).parent)) or "five"


def five(*args, cwd=None):
    return subprocess.run([FIVE, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_train_then_evaluate_writes_the_promised_files(tmp_path):
    run = tmp_path / "run"
    trained = five(
        "train",
        "--model",
        "five",
        "--dataset",
        "digits",
        "--latent-dim",
        3,
        "--probes",
        2,
        "--epochs",
        2,
        "--hidden-width",
        32,
        "--device",
        "cpu",
        "--out",
        run,
    )
    assert trained.returncode == 0, trained.stderr
    assert "epoch     2/2" in trained.stdout and "sigma" in trained.stdout
    record = json.loads((run / "train.json").read_text())
    assert record["config"]["probes"] == 2 and len(record["history"]) == 2 and record["device"] == "cpu"
    assert {"epoch", "loss", "sigma", "time_s"} <= set(record["history"][0])
    assert (run / "checkpoint.pt").exists()

    evaluated = five(
        "evaluate", "--run", run, "--importance-samples", 8, "--device", "cpu", "--out", tmp_path / "eval.json"
    )
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((tmp_path / "eval.json").read_text())
    for key in ("nll_nats", "bits_per_dim", "elbo_nats", "ess_mean", "recon_mse"):
        assert math.isfinite(metrics[key]), key
    for key in ("active_units", "active_units_eigen", "n_examples", "importance_samples", "config"):
        assert key in metrics
    assert metrics["importance_samples"] == 8 and metrics["config"]["model"] == "five"
    per_example = metrics["log_likelihood_per_example"]  # what the claims pair example by example
    assert len(per_example) == metrics["n_examples"]
    assert -sum(per_example) / len(per_example) == pytest.approx(metrics["nll_nats"], abs=1e-4)
    for metric, values in (("elbo_nats", "elbo_per_example"), ("ess_mean", "ess_per_example")):
        assert len(metrics[values]) == metrics["n_examples"]
        assert sum(metrics[values]) / metrics["n_examples"] == pytest.approx(metrics[metric], abs=1e-4), metric
    assert "bits/dim" in evaluated.stdout
    assert f"(test split, {metrics['n_examples']} examples, 8 importance samples)" in evaluated.stdout

    # rerunning on the finished folder resumes: nothing left to train, same checkpoint
    again = five(
        "train",
        "--model",
        "five",
        "--dataset",
        "digits",
        "--latent-dim",
        3,
        "--probes",
        2,
        "--epochs",
        2,
        "--hidden-width",
        32,
        "--device",
        "cpu",
        "--out",
        run,
    )
    assert again.returncode == 0 and "nothing to do" in again.stdout


@pytest.mark.parametrize(
    "args, cause",
    [
        (["train", "--model", "gan", "--dataset", "digits", "--latent-dim", "4"], "unknown model 'gan'"),
        (["train", "--model", "vae", "--dataset", "mnistt", "--latent-dim", "4"], "unknown dataset 'mnistt'"),
        (["train", "--model", "five", "--dataset", "digits", "--latent-dim", "4", "--probes", "5"], "K=5"),
        (["train", "--model", "vae", "--dataset", "npz:/nonexistent/x.npz", "--latent-dim", "4"], "not found"),
        (["train", "--model", "vae", "--dataset", "digits"], "--latent-dim"),
        (["train", "--model", "vae", "--dataset", "digits", "--latent-dim", "four"], "invalid int value"),
    ],
)
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(tmp_path, args, cause):
    result = five(*args, "--out", tmp_path / "run")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("five: error:") and cause in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_settings_file_gives_the_runs_its_options_give(tmp_path):
    """The workflow's `five train --settings training.json` and a user's options build the same runs."""
    from five.cli import build_parser
    from five.jobs import train_configs

    settings = {"model": "fif", "dataset": "digits", "latent_dim": 4, "probes": 2, "beta": 4, "epochs": 3}
    settings |= {"checkpoint_every": None, "patience": None}  # null: not given, the default (as an option left out)
    (tmp_path / "training.json").write_text(json.dumps(settings))
    tail = ["--seed", "0", "1", "--out", "a", "b"]
    from_file = train_configs(
        build_parser().parse_args(["train", "--settings", str(tmp_path / "training.json"), *tail])
    )
    options = [
        "--model",
        "fif",
        "--dataset",
        "digits",
        "--latent-dim",
        "4",
        "--probes",
        "2",
        "--beta",
        "4",
        "--epochs",
        "3",
    ]
    from_options = train_configs(build_parser().parse_args(["train", *options, *tail]))
    assert from_file == from_options and [config.seed for config in from_file] == [0, 1]
    assert from_file[0].beta == 4.0 and isinstance(from_file[0].beta, float)  # as the option parser makes it
    from five.base.config import TrainConfig

    numpy_row = TrainConfig(model="vae", dataset="digits", latent_dim=np.int64(4), lr=np.float32(0.5))
    assert type(numpy_row.latent_dim) is int and numpy_row == TrainConfig(
        model="vae", dataset="digits", latent_dim=4, lr=0.5
    )


@pytest.mark.parametrize(
    "content, extra, cause",
    [
        (None, [], "no such file"),
        ("{not json", [], "is not a readable JSON file"),
        ("[1, 2]", [], "a JSON object of settings was expected"),
        ('{"model": "vae", "dataset": "digits", "latent_dim": 4, "seed": 3}', [], "not settings of a run: 'seed'"),
        ('{"model": "vae", "dataset": "digits", "latent_dim": "4"}', [], "the setting latent_dim must be int"),
        ('{"model": "vae", "dataset": "digits", "latent_dim": 4, "lr": NaN}', [], "--lr must be a finite number"),
        ('{"model": "vae", "dataset": "digits", "latent_dim": 4}', ["--epochs", "3"], "--epochs may not be given"),
        ("{}", [], "the setting(s) model, dataset, latent_dim must be given"),
        ('{"model": "vae", "dataset": null, "latent_dim": 4}', [], "the setting(s) dataset must be given"),
        ('{"model": "vae", "dataset": "digits", "latent_dim": 4, "latent_dim": 3}', [], "'latent_dim' appear more"),
        ('{"model": "vae", "dataset": "digits", "latent_dim": 4, "lr": 1' + "0" * 400 + "}", [], "lr must be a finite"),
        ("[" * 100_000 + "]" * 100_000, [], "is not a readable JSON file"),
        (
            '{"model": "vae", "dataset": "digits", "latent_dim": true}',
            [],
            "the setting latent_dim must be int, got True",
        ),
        ("folder", [], "is a folder, not a JSON file"),
        ("fifo", [], "is a FIFO, not a JSON file"),  # reading it would wait for a writer forever
        ("dangling link", [], "is a link to nothing, not a JSON file"),
    ],
)
def test_a_bad_settings_file_is_one_clear_line(tmp_path, content, extra, cause):
    settings = tmp_path / "training.json"
    if content == "folder":
        settings.mkdir()
    elif content == "fifo":
        os.mkfifo(settings)
    elif content == "dangling link":
        settings.symlink_to(tmp_path / "nothing")
    elif content is not None:
        settings.write_text(content)
    result = five("train", "--settings", settings, *extra, "--device", "cpu", "--out", tmp_path / "run")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("five: error:") and cause in lines[0], result.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_evaluating_a_missing_run_is_one_clear_line(tmp_path):
    result = five("evaluate", "--run", tmp_path / "nothing", "--out", tmp_path / "eval.json")
    assert result.returncode == 2 and "is not a run folder (train it first" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "eval.json").exists()


def test_several_runs_evaluated_in_one_process_equal_each_evaluated_alone(tmp_path):
    """A sweep point's evaluate job: its seeds in turn in one process, each eval.json as its own job wrote it."""
    runs = [tmp_path / "s0", tmp_path / "s1"]
    trained = five(
        "train",
        "--model",
        "five",
        "--dataset",
        "digits",
        "--latent-dim",
        2,
        "--epochs",
        1,
        "--hidden-width",
        16,
        "--device",
        "cpu",
        "--seed",
        0,
        1,
        "--out",
        *runs,
    )
    assert trained.returncode == 0, trained.stderr
    options = ["--importance-samples", 8, "--sigma", "fitted", "--device", "cpu"]
    together = five(
        "evaluate",
        "--run",
        *runs,
        *options,
        "--image-dir",
        *(run / "grids" for run in runs),
        "--out",
        *(run / "eval.json" for run in runs),
    )
    assert together.returncode == 0, together.stderr
    for run in runs:
        alone = five("evaluate", "--run", run, *options, "--out", run / "alone.json")
        assert alone.returncode == 0, alone.stderr
        packed, solo = (json.loads((run / name).read_text()) for name in ("eval.json", "alone.json"))
        assert packed["config"]["seed"] == solo["config"]["seed"] == int(run.name[1:])
        for key in ("nll_nats", "elbo_nats", "sigma", "active_units", "rate_nats"):
            assert packed[key] == solo[key], key
        assert sorted(path.name for path in (run / "grids").iterdir()) == ["reconstructions.png", "samples.png"]
    assert (
        json.loads((runs[0] / "eval.json").read_text())["nll_nats"]
        != json.loads((runs[1] / "eval.json").read_text())["nll_nats"]
    )


@pytest.mark.parametrize(
    "extra, cause",
    [
        (["--out", "a.json"], "one --out per run folder: 2 folders, 1 given"),
        (["--out", "a.json", "a.json"], "a path is named twice in --out"),
        (["--out", "a", "a/b.json"], "--out a/b.json lies inside a, also given in --out"),
        (["--out", "a.json", "b.json", "--image-dir", "g", "g/h"], "--image-dir g/h lies inside g"),
        (["--out", "a.json", "b.json", "--image-dir", "g"], "one --image-dir per run folder"),
        (
            ["--out", "a.json", "b.json", "--mlflow-experiment", "e", "--mlflow-run-key", "k"],
            "one --mlflow-run-key per run folder",
        ),
    ],
)
def test_several_runs_with_mismatched_options_are_refused_in_one_line(tmp_path, extra, cause):
    for name in ("r0", "r1"):
        (tmp_path / name).mkdir()
    result = five("evaluate", "--run", "r0", "r1", "--device", "cpu", *extra, cwd=tmp_path)
    assert result.returncode == 2 and cause in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.json"))


def test_time_steps_times_each_configuration_in_every_round(tmp_path):
    points = [
        {"model": "vae", "latent_dim": 2, "hidden_width": 16},
        {"model": "five", "latent_dim": 2, "probes": 1, "surrogate_point": "sample", "hidden_width": 16},
    ]
    result = five(
        "time-steps",
        "--dataset",
        "digits",
        "--points",
        json.dumps(points),
        "--rounds",
        3,
        "--device",
        "cpu",
        "--out",
        tmp_path / "steps.csv",
    )
    assert result.returncode == 0, result.stderr
    import pandas as pd

    table = pd.read_csv(tmp_path / "steps.csv")
    assert len(table) == 6 and sorted(table["round"].unique()) == [0, 1, 2]
    assert sorted(table["model"].unique()) == ["five-sample", "vae"]  # the names of runs.csv
    assert table.set_index("model")["probes"].to_dict() == {"vae": 0, "five-sample": 1}
    assert (table["step_time_s"] > 0).all() and set(table["device"]) == {"CPU"}
    progress = [line for line in result.stderr.splitlines() if line.startswith("round ")]
    assert len(progress) == 3 and all(", five-sample d=2 K=1 " in line for line in progress), progress
    assert all(line.startswith(f"round {r}/3: vae d=2 ") for r, line in enumerate(progress, 1)), progress
    assert not any("vae d=2 K" in line for line in progress), progress  # a VAE has no budget to name


@pytest.mark.parametrize(
    "points, cause",
    [
        ("not json", "--points is not valid JSON"),
        ("[]", "--points must be a non-empty JSON list"),
        ('[{"model": "vae", "latent_dim": 2, "lr": 1}]', "unknown key(s) lr"),
        ('[{"model": "gan", "latent_dim": 2}]', "unknown model 'gan'"),
        ('[{"model": "vae", "latent_dim": "2"}]', "the setting latent_dim must be int, got '2'"),
        ('[{"latent_dim": 2}]', "the setting(s) model must be given"),
        ('[{"model": "vae", "latent_dim": 2, "hidden_width": 3037000500}]', "cannot be built"),
        ('[{"model": "vae", "model": "five", "latent_dim": 2}]', "the key(s) 'model' appear more than once"),
        ('[{"model": "vae", "latent_dim": ' + "9" * 5000 + "}]", "--points is not valid JSON"),
        (
            '[{"model": "vae", "latent_dim": 2}, {"model": "five", "latent_dim": 2}, '
            '{"model": "vae", "latent_dim": 2, "hidden_width": 64}]',
            "--points 1 and 3 are one row of the table (model vae, latent_dim 2, probes 0)",
        ),
    ],
    ids=lambda value: value[:40] if isinstance(value, str) else None,
)
def test_time_steps_refuses_bad_points_in_one_line(tmp_path, points, cause):
    result = five("time-steps", "--dataset", "digits", "--points", points, "--out", tmp_path / "steps.csv")
    assert result.returncode == 2 and cause in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "steps.csv").exists()


def test_the_closing_line_names_the_files_the_run_folder_holds(tmp_path):
    """A run cut from a longer one keeps best.pt and train.json but no checkpoint.pt; the line said it wrote one."""
    from five.jobs import finished_summary

    record = {"epochs_completed": 25, "history": [{"epoch": 25, "loss": 1.5}], "wall_time_s": 2.0}
    for name in ("best.pt", "train.json"):
        (tmp_path / name).write_text("")
    assert (
        finished_summary(record, tmp_path)
        == f"done: 25 epochs, final loss 1.5, wall time 2.0s; {tmp_path} holds best.pt, train.json"
    )
    (tmp_path / "checkpoint.pt").write_text("")
    assert finished_summary(record, tmp_path).endswith("holds checkpoint.pt, best.pt, train.json")
