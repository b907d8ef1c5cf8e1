"""MLflow tracking: concurrent jobs lose no run, a rerun replaces its run, evaluation joins the train run."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from five.run.tracking import RunTracker, ensure_experiment

JOB = """
import sys
from five.run.tracking import RunTracker
tracker = RunTracker("concurrent", sys.argv[1])
tracker.start({"model": "five", "key": sys.argv[1]})
for epoch in range(1, 21):
    tracker.log_metrics({"loss": 1.0 / epoch}, step=epoch, flush=True)  # many writes: provoke lock contention
tracker.log_metrics({"eval_nll_nats": 42.0})
tracker.finish()
"""


def runs_by_key(uri, experiment):
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id])
    return client, {run.data.tags["five.run_key"]: run for run in runs}, runs


def test_concurrent_jobs_each_leave_exactly_one_complete_run(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    ensure_experiment("concurrent", artifact_location=str(tmp_path / "artifacts"))
    keys = [f"results/run{i}" for i in range(6)]
    jobs = [subprocess.Popen([sys.executable, "-c", JOB, key], stderr=subprocess.PIPE, text=True) for key in keys]
    for job in jobs:
        assert job.wait(timeout=300) == 0, job.stderr.read()
    # one of them reruns: its run is replaced, not duplicated
    subprocess.run([sys.executable, "-c", JOB, keys[0]], check=True, timeout=300)
    client, by_key, runs = runs_by_key(uri, "concurrent")
    assert len(runs) == len(keys) and set(by_key) == set(keys)
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.metrics["eval_nll_nats"] == 42.0
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(metric.step for metric in history) == list(range(1, 21))


def test_evaluation_attaches_to_the_train_run_and_artifacts_are_stored(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    ensure_experiment("attach", artifact_location=str(tmp_path / "artifacts"))
    train = RunTracker("attach", "results/a")
    train.start({"lr": 0.1})
    train.log_metrics({"loss": 1.0}, step=1, flush=False)  # buffered until finish
    train.finish()
    artifact = tmp_path / "eval.json"
    artifact.write_text("{}")
    evaluation = RunTracker("attach", "results/a")
    evaluation.attach()
    evaluation.log_metrics({"eval_nll_nats": 3.0, "eval_split": "test"})  # non-numbers are skipped
    evaluation.log_artifacts([artifact])
    evaluation.finish()
    client, by_key, runs = runs_by_key(uri, "attach")
    assert len(runs) == 1
    run = by_key["results/a"]
    assert run.data.metrics == {"loss": 1.0, "eval_nll_nats": 3.0} and run.data.params == {"lr": "0.1"}
    assert [item.path for item in client.list_artifacts(run.info.run_id)] == ["eval.json"]


def tracker_experiment(uri: str, artifacts: str, key: str) -> str:
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return RunTracker("fresh", key, artifact_location=artifacts).experiment_id


def test_jobs_starting_together_on_a_new_store_share_one_experiment(tmp_path):
    """No workflow job creates the store or the experiment ahead of the others: four processes start on a new
    SQLite store at once, and all end in one experiment (with the artifact location they gave)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from mlflow.tracking import MlflowClient

    uri, artifacts = f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts")
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        ids = list(pool.map(tracker_experiment, [uri] * 4, [artifacts] * 4, [f"results/x{i}" for i in range(4)]))
    assert len(set(ids)) == 1
    experiment = MlflowClient(uri).get_experiment_by_name("fresh")
    assert experiment.experiment_id == ids[0] and experiment.artifact_location.endswith("artifacts")


def test_a_rerun_replaces_only_its_own_run_and_only_after_the_new_one_exists(tmp_path, monkeypatch):
    """Two checkouts share one server and experiment: the same relative run folder under two results folders
    has two identities (absolute paths), so neither rerun deletes the other's run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    ensure_experiment("shared", artifact_location=str(tmp_path / "artifacts"))
    mine, theirs = [str(tmp_path / checkout / "results/digits/vae/d2/k0/s0") for checkout in ("a", "b")]
    for key in (mine, theirs, mine):  # the last one is my rerun
        tracker = RunTracker("shared", key)
        tracker.start({"key": key})
        tracker.finish()
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("shared").experiment_id
    alive = client.search_runs([experiment_id])
    assert sorted(run.data.tags["five.run_key"] for run in alive) == sorted([mine, theirs])
    deleted = client.search_runs([experiment_id], run_view_type=2)  # ViewType.DELETED_ONLY
    assert [run.data.tags["five.run_key"] for run in deleted] == [mine]

    # the replacement is created before the old run is deleted: a failing create leaves the old run alive
    tracker = RunTracker("shared", theirs)
    monkeypatch.setattr(tracker.client, "create_run", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("down")))
    try:
        tracker.start({})
    except RuntimeError:
        pass
    assert theirs in [run.data.tags["five.run_key"] for run in client.search_runs([experiment_id])]


def test_a_server_lost_mid_run_leaves_one_warning_and_sync_completes_the_run(tmp_path, monkeypatch):
    """The store goes away after a run started logging: one warning, the job goes on; `five mlflow-sync`
    replaces the half-logged run with the whole one from the JSON files, and leaves complete runs alone."""
    import json

    from five.run.tracking import sync_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    run_dir = tmp_path / "results" / "e" / "digits" / "vae" / "d2" / "k0" / "s0"
    run_dir.mkdir(parents=True)
    warnings = []
    tracker = RunTracker("sync", str(run_dir.resolve()), warn=warnings.append)
    tracker.start({"lr": 0.1})
    tracker.log_metrics({"loss": 3.0}, step=1)
    monkeypatch.setattr(tracker.client, "log_batch", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("down")))
    for epoch in (2, 3):
        tracker.log_metrics({"loss": 3.0 / epoch}, step=epoch)
    tracker.finish()
    assert len(warnings) == 1 and "five mlflow-sync" in warnings[0]
    history = [{"epoch": epoch, "loss": 3.0 / epoch, "sigma": 0.1, "time_s": 0.1} for epoch in (1, 2, 3)]
    (run_dir / "train.json").write_text(
        json.dumps(
            {
                "status": "complete",
                "config": {"model": "vae", "dataset": "digits", "lr": 0.1, "patience": 3},
                "history": history,
                "wall_time_s": 0.3,
                "device": "cpu",
            }
        )
    )
    # as train.json's, but for its schedule (a run cut or continued by an edit): an evaluation of this run
    config = {"model": "vae", "dataset": "digits", "lr": 0.1, "patience": 5}
    (run_dir / "eval.json").write_text(json.dumps({"status": "complete", "nll_nats": 40.0, "config": config}))
    assert sync_run("sync", run_dir) == "logged"
    assert sync_run("sync", run_dir) == "already in MLflow"
    (logged,) = runs_by_key(uri, "sync")[2]
    MlflowClient(uri).update_run(logged.info.run_id, status="RUNNING")  # as a job killed while logging leaves it
    assert sync_run("sync", run_dir) == "logged"
    client, by_key, runs = runs_by_key(uri, "sync")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")] == [1, 2, 3]
    assert runs[0].data.metrics["eval_nll_nats"] == 40.0 and "five.superseded" not in runs[0].data.tags
    superseded = run_dir / ".superseded" / "20261207T000000Z"  # as a config edit moves a run aside
    shutil.copytree(run_dir, superseded, ignore=shutil.ignore_patterns(".superseded"))
    assert sync_run("sync", superseded) == "logged (a superseded run, tagged five.superseded)"
    _, by_key, _ = runs_by_key(uri, "sync")
    assert by_key[str(superseded.resolve())].data.tags["five.superseded"] == "true"
    record = json.loads((run_dir / "train.json").read_text())
    (run_dir / "train.json").write_text(json.dumps(record | {"status": "running"}))  # its job logs it
    assert sync_run("sync", run_dir) == "skipped: training has not ended (status running)"


def test_run_keys_with_quotes_and_wildcards_replace_only_their_own_run(tmp_path, monkeypatch):
    """Run keys are paths, which may hold quotes, backslashes and LIKE's wildcards: a rerun of each replaces its
    own run and no other, even of keys that differ only there, and nothing is left untracked."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    keys = ["/co/x'q/s0", '/co/x"q/s0', "/co/x_q/s0", "/co/x\\q/s0", "/co/x%q/s0", "/co/'\"both/s0"]
    warnings = []
    for attempt in range(2):
        for key in keys:
            tracker = RunTracker("quoted", key, warn=warnings.append)
            tracker.start({"attempt": attempt})
            tracker.finish()
    _, by_key, runs = runs_by_key(f"sqlite:///{tmp_path / 'mlflow.db'}", "quoted")
    assert not warnings and len(runs) == len(keys) and set(by_key) == set(keys)
    assert all(run.data.params["attempt"] == "1" for run in runs)


def test_a_jobs_artifact_location_may_be_a_file_uri(tmp_path, monkeypatch):
    """`five train --mlflow-artifact-location file:///…` names that folder (as mlflow-init's option does), not a
    folder called "file:" under the current one; and the folder is checked as a path is."""
    from five.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    location = (tmp_path / "arts").as_uri()
    options = ["train", "--model", "vae", "--dataset", "manifold", "--latent-dim", "2", "--epochs", "1"]
    main([*options, "--mlflow-experiment", "uri", "--mlflow-artifact-location", location, "--out", "run"])
    experiment = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_experiment_by_name("uri")
    assert experiment.artifact_location == str((tmp_path / "arts").resolve()) and not (tmp_path / "file:").exists()
    assert (
        main(
            [
                *options,
                "--mlflow-experiment",
                "uri",
                "--mlflow-artifact-location",
                (tmp_path / "run" / "a").as_uri(),
                "--out",
                "r2",
            ]
        )
        == 2
    )


def test_mlflow_sync_logs_a_run_only_to_the_experiment_it_was_trained_for(tmp_path, monkeypatch, capsys):
    """`five mlflow-sync --experiment X` of another experiment's runs filed them under X as well, exit 0."""
    from five.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    options = ["train", "--model", "vae", "--dataset", "manifold", "--latent-dim", "2", "--epochs", "1"]
    assert main([*options, "--mlflow-experiment", "mine", "--out", "run"]) == 0
    capsys.readouterr()
    assert main(["mlflow-sync", "--experiment", "other", "run"]) == 2
    assert "run was trained for the MLflow experiment 'mine', not 'other'" in capsys.readouterr().err
    assert MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_experiment_by_name("other") is None
    assert main(["mlflow-sync", "--experiment", "mine", "run"]) == 0
    assert "run: already in MLflow" in capsys.readouterr().out


def test_an_evaluation_of_another_split_is_logged_under_its_split_not_as_the_test_numbers():
    from five.run.tracking import evaluation_metrics

    assert evaluation_metrics({"split": "test", "nll_nats": 40.0}) == {"eval_split": "test", "eval_nll_nats": 40.0}
    assert evaluation_metrics({"split": "train", "nll_nats": 38.0}) == {
        "eval_train_split": "train",
        "eval_train_nll_nats": 38.0,
    }


def test_mlflow_sync_logs_an_evaluation_of_another_split_under_its_split(tmp_path, monkeypatch):
    import json

    from five.run.tracking import sync_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = {"model": "vae", "dataset": "digits", "lr": 0.1}
    history = [{"epoch": 1, "loss": 3.0, "sigma": 0.1, "time_s": 0.1}]
    record = {"status": "complete", "config": config, "history": history, "wall_time_s": 0.1, "device": "cpu"}
    (run_dir / "train.json").write_text(json.dumps(record))
    evaluation = {"status": "complete", "split": "train", "nll_nats": 38.0, "config": config}
    (run_dir / "eval.json").write_text(json.dumps(evaluation))
    assert sync_run("split", run_dir) == "logged"
    _, _, runs = runs_by_key(uri, "split")
    assert runs[0].data.metrics["eval_train_nll_nats"] == 38.0 and "eval_nll_nats" not in runs[0].data.metrics


def test_a_database_server_whose_driver_is_not_installed_is_refused_not_taken_for_an_outage():
    """Without its driver MLflow failed at every job, which went on untracked, exit 0, as if the server were down."""
    import importlib.util

    from five.base.errors import ConfigError
    from five.run.tracking import check_tracking_uri

    for uri, driver in (("postgresql://u@host/db", "psycopg2"), ("mysql+pymysql://u@host/db", "pymysql")):
        if importlib.util.find_spec(driver) is not None:
            continue  # installed here: the URI is served
        with pytest.raises(ConfigError, match=f"needs the database driver '{driver}', which is not installed"):
            check_tracking_uri(uri, "MLFLOW_TRACKING_URI")


def test_mlflow_commands_say_which_store_they_write_to(tmp_path, monkeypatch, capsys):
    """mlflow-init and mlflow-sync run by hand log to $MLFLOW_TRACKING_URI, else to MLflow's default in the working
    folder (not the workflow's results/mlflow.db): they say which, and write there."""
    from five.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlruns" / "1").mkdir(parents=True)  # a file store's experiment: MLflow's own default would be it
    (tmp_path / "mlruns" / "1" / "meta.yaml").write_text("name: old\n")
    assert main(["mlflow-init", "--experiment", "here"]) == 0
    assert "MLflow store: sqlite:///mlflow.db, MLflow's default in the working folder" in capsys.readouterr().out
    assert MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment_by_name("here") is not None
    elsewhere = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    assert main(["mlflow-init", "--experiment", "there"]) == 0
    assert f"MLflow store: {elsewhere} ($MLFLOW_TRACKING_URI)" in capsys.readouterr().out
    assert MlflowClient(elsewhere).get_experiment_by_name("there") is not None


@pytest.mark.parametrize(
    "schedules, recorded_anew",
    [
        (
            [["--epochs", "4", "--eval-every", "1"], ["--epochs", "4", "--eval-every", "2"]],
            "already holds all 4 epochs",
        ),
        ([["--lr", "0.05", "--epochs", "12"], ["--lr", "0.05", "--epochs", "11"]], "is best.pt's"),  # best epoch 11
    ],
    ids=["validations replayed", "cut to its best epoch"],
)
def test_a_run_recorded_anew_without_training_is_logged_anew(tmp_path, monkeypatch, capsys, schedules, recorded_anew):
    """A finished run whose schedule is edited (eval_every, or fewer epochs) is recorded anew from its checkpoints
    without training: its MLflow run follows its train.json (params, the replayed validations, the end)."""
    from five.cli import main

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    options = ["train", "--model", "vae", "--dataset", "manifold", "--latent-dim", "2", "--patience", "100"]
    tracked = ["--mlflow-experiment", "edits", "--restart-if-changed", "--out", "run"]
    for schedule in schedules:
        assert main([*options, *schedule, *tracked]) == 0
        record = json.loads((tmp_path / "run" / "train.json").read_text())
        client, by_key, runs = runs_by_key(uri, "edits")
        assert len(runs) == 1, "the earlier MLflow run of the run folder is replaced"
        (run,) = by_key.values()
        assert run.info.status == "FINISHED" and run.data.params["epochs"] == str(record["config"]["epochs"])
        assert run.data.params["eval_every"] == str(record["config"]["eval_every"])
        validated = [entry["epoch"] for entry in record["history"] if entry.get("val_nll") is not None]
        assert [metric.step for metric in client.get_metric_history(run.info.run_id, "val_nll")] == validated
        assert len(client.get_metric_history(run.info.run_id, "loss")) == record["epochs_completed"]
        assert run.data.metrics["train_wall_time_s"] == record["wall_time_s"]
    assert recorded_anew in capsys.readouterr().out  # the last edit trained nothing
    assert main([*options, *schedules[-1], *tracked]) == 0  # again: kept as it is, its MLflow run too
    assert "nothing to do" in capsys.readouterr().out
    assert [run.info.run_id for run in runs_by_key(uri, "edits")[2]] == [run.info.run_id]


def test_mlflow_sync_repairs_a_run_recorded_anew_while_untracked(tmp_path, monkeypatch, capsys):
    """A run recorded anew (an edited eval_every) by a job that could not track leaves MLflow with the run of before
    (ended, trained, with the old settings): mlflow-sync, which logs what MLflow lacks, replaces it."""
    from five.cli import main

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    options = ["train", "--model", "vae", "--dataset", "manifold", "--latent-dim", "2", "--epochs", "4"]
    assert main([*options, "--eval-every", "1", "--mlflow-experiment", "fix", "--out", "run"]) == 0
    assert main([*options, "--eval-every", "2", "--restart-if-changed", "--out", "run"]) == 0  # untracked
    assert runs_by_key(uri, "fix")[2][0].data.params["eval_every"] == "1"
    capsys.readouterr()
    assert main(["mlflow-sync", "--experiment", "fix", "run"]) == 0
    assert "run: logged" in capsys.readouterr().out
    (run,) = runs_by_key(uri, "fix")[2]
    assert run.data.params["eval_every"] == "2" and run.info.status == "FINISHED"
    assert main(["mlflow-sync", "--experiment", "fix", "run"]) == 0
    assert "run: already in MLflow" in capsys.readouterr().out


def test_a_run_recorded_anew_is_logged_even_when_a_later_member_of_its_pack_fails(tmp_path, monkeypatch):
    """Each run recorded anew is re-logged as soon as its train.json is: a pack member that fails after it (a
    damaged checkpoint) leaves it logged, where the next job would keep it as it is and never log it."""
    import torch

    from five.cli import main

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    options = ["train", "--model", "vae", "--dataset", "manifold", "--latent-dim", "2", "--epochs", "4"]
    tracked = ["--seed", "0", "1", "--mlflow-experiment", "pack", "--restart-if-changed", "--out", "a", "b"]
    assert main([*options, "--eval-every", "1", *tracked]) == 0
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    state["optimizer"]["param_groups"] = []  # b's Adam state no longer fits its model: b fails as it is prepared
    torch.save(state, tmp_path / "b" / "checkpoint.pt")
    assert main([*options, "--eval-every", "2", *tracked]) != 0
    assert json.loads((tmp_path / "a" / "train.json").read_text())["config"]["eval_every"] == 2
    _, by_key, _ = runs_by_key(uri, "pack")
    assert by_key[str((tmp_path / "a").resolve())].data.params["eval_every"] == "2"
    assert by_key[str((tmp_path / "b").resolve())].data.params["eval_every"] == "1"


def test_a_finished_run_mlflow_lacks_is_logged_by_the_job_that_keeps_it(tmp_path, monkeypatch, capsys):
    """A run trained by hand (untracked) and then met by a tracked job, which keeps it as it is, is logged whole
    (not left to the evaluate job's empty run); one trained for another experiment is not, and the job says so."""
    from five.cli import main

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    options = ["train", "--model", "vae", "--dataset", "manifold", "--latent-dim", "2", "--epochs", "3", "--out", "run"]
    assert main(options) == 0
    assert main([*options, "--mlflow-experiment", "kept"]) == 0
    assert "is finished (complete, 3 epochs); nothing to do" in capsys.readouterr().out
    record = json.loads((tmp_path / "run" / "train.json").read_text())
    client, _, runs = runs_by_key(uri, "kept")
    assert len(runs) == 1 and runs[0].data.params["epochs"] == "3"
    assert runs[0].data.metrics["train_wall_time_s"] == record["wall_time_s"]
    assert len(client.get_metric_history(runs[0].info.run_id, "loss")) == 3
    assert main([*options, "--mlflow-experiment", "kept"]) == 0  # MLflow holds it now: left as it is
    assert [run.info.run_id for run in runs_by_key(uri, "kept")[2]] == [runs[0].info.run_id]
    other = ["train", "--model", "vae", "--dataset", "manifold", "--latent-dim", "2", "--epochs", "3", "--out", "b"]
    assert main([*other, "--mlflow-experiment", "first"]) == 0
    capsys.readouterr()
    assert main([*other, "--mlflow-experiment", "second"]) == 0
    assert "was trained for the MLflow experiment 'first': not logged to this one" in capsys.readouterr().out
    second = MlflowClient(uri).get_experiment_by_name("second")
    assert second is None or not MlflowClient(uri).search_runs([second.experiment_id])


def test_mlflow_sync_repairs_an_evaluation_made_again_while_untracked(tmp_path, monkeypatch, capsys):
    """An evaluation made again without tracking (other importance samples) leaves MLflow with the numbers of
    before: mlflow-sync compares them with eval.json's and logs the run again."""
    from five.cli import main

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    train = ["train", "--model", "vae", "--dataset", "manifold", "--latent-dim", "2", "--epochs", "2", "--out", "run"]
    assert main([*train, "--mlflow-experiment", "ev"]) == 0
    evaluate = ["evaluate", "--run", "run", "--out", "run/eval.json"]
    assert main([*evaluate, "--importance-samples", "4", "--mlflow-experiment", "ev"]) == 0
    assert main([*evaluate, "--importance-samples", "6"]) == 0  # untracked
    capsys.readouterr()
    assert main(["mlflow-sync", "--experiment", "ev", "run"]) == 0
    assert "run: logged" in capsys.readouterr().out
    (run,) = runs_by_key(uri, "ev")[2]
    evaluation = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert run.data.metrics["eval_importance_samples"] == 6 and evaluation["importance_samples"] == 6
    assert run.data.metrics["eval_nll_nats"] == evaluation["nll_nats"]
    assert main(["mlflow-sync", "--experiment", "ev", "run"]) == 0
    assert "run: already in MLflow" in capsys.readouterr().out


def test_an_evaluation_made_again_without_a_metric_retracts_the_earlier_one(tmp_path, monkeypatch, capsys):
    """FIF evaluated at a fitted σ also reports its own σ's NLL; evaluated again at its own σ (a `sigma` edit) it
    does not, and MLflow, which cannot delete a metric, would go on showing the old number beside the new ones:
    the evaluation sets it to NaN. A hand-run evaluation of another split keeps its numbers, and mlflow-sync
    takes a run still showing an outdated number for one to repair."""
    import math

    from five.cli import main

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    train = ["train", "--model", "fif", "--dataset", "manifold", "--latent-dim", "2", "--epochs", "2", "--out", "run"]
    assert main([*train, "--mlflow-experiment", "ev"]) == 0
    evaluate = ["evaluate", "--run", "run", "--importance-samples", "4", "--mlflow-experiment", "ev"]
    assert main([*evaluate, "--split", "validation", "--sigma", "fitted", "--out", "validation.json"]) == 0
    assert main([*evaluate, "--sigma", "fitted", "--out", "run/eval.json"]) == 0
    (run,) = runs_by_key(uri, "ev")[2]
    assert math.isfinite(run.data.metrics["eval_nll_nats_own_sigma"])  # a real test: the metric was there
    assert main([*evaluate, "--out", "run/eval.json"]) == 0  # sigma: own
    (run,) = runs_by_key(uri, "ev")[2]
    evaluation = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert "nll_nats_own_sigma" not in evaluation and math.isnan(run.data.metrics["eval_nll_nats_own_sigma"])
    assert run.data.metrics["eval_nll_nats"] == evaluation["nll_nats"]
    assert math.isfinite(run.data.metrics["eval_validation_nll_nats_own_sigma"])  # another split's: kept
    capsys.readouterr()
    assert main(["mlflow-sync", "--experiment", "ev", "run"]) == 0
    assert "run: already in MLflow" in capsys.readouterr().out
    MlflowClient(uri).log_metric(run.info.run_id, "eval_nll_nats_own_sigma", 1.0)  # as before the retraction
    assert main(["mlflow-sync", "--experiment", "ev", "run"]) == 0
    assert "run: logged" in capsys.readouterr().out
    (run,) = runs_by_key(uri, "ev")[2]
    assert "eval_nll_nats_own_sigma" not in run.data.metrics  # logged afresh from the files


def test_the_summary_says_how_to_look_at_the_store():
    """`mlflow ui` serves a database, not a tracking server (it fails on an http URI): a server is opened."""
    from five.run.tracking import browse_command

    assert browse_command("http://host:5000") == "open http://host:5000 in a browser"
    assert browse_command("sqlite:////a b/mlflow.db") == "mlflow ui --backend-store-uri 'sqlite:////a b/mlflow.db'"


def test_a_job_whose_experiment_keeps_its_artifacts_elsewhere_says_so_once(tmp_path, monkeypatch):
    """An experiment keeps the artifact folder it was created with (a copied or moved checkout's store, a second
    checkout on a shared one): a job asking for another folder is told, once, where its artifacts go."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr("five.run.tracking.WARNED_ARTIFACT_FOLDERS", set())
    ensure_experiment("kept", artifact_location=str(tmp_path / "first"))
    lines = []
    for key, location in (("a", "first"), ("b", None), ("c", "second"), ("d", "second")):
        RunTracker("kept", key, warn=lines.append, artifact_location=location and str(tmp_path / location))
    assert len(lines) == 1, lines
    assert f"keeps its artifacts in {tmp_path / 'first'}" in lines[0] and f"not in {tmp_path / 'second'}" in lines[0]
    monkeypatch.setattr("five.run.tracking.WARNED_ARTIFACT_FOLDERS", set())
    RunTracker("kept", "e", warn=lines.append, artifact_location=(tmp_path / "first").as_uri())
    monkeypatch.chdir(tmp_path)
    RunTracker("kept", "f", warn=lines.append, artifact_location="first")
    assert len(lines) == 1  # the same folder as a file: URI, and as a relative path


def test_a_diverged_run_is_failed_in_mlflow_and_a_foreign_runs_evaluation_logs_no_training(
    tmp_path, monkeypatch, capsys
):
    """A diverging `five train` fails unless told to record the divergence; recorded, its MLflow run is FAILED, by
    the job and by mlflow-sync alike. An evaluation logged to another experiment than the run was trained for
    joins no training there (as mlflow-sync), and says so."""
    from five.cli import main
    from five.run.tracking import sync_run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    options = ["train", "--model", "vae", "--dataset", "manifold", "--latent-dim", "2", "--epochs", "1"]
    assert main([*options, "--lr", "1e6", "--out", "bad"]) != 0
    tracked = [*options, "--lr", "1e6", "--record-divergence", "--mlflow-experiment", "d"]
    assert main([*tracked, "--out", "bad"]) == 0  # kept as recorded, and logged from its record
    assert main([*tracked, "--out", "tracked"]) == 0  # trained and logged as it goes
    assert json.loads((tmp_path / "tracked" / "train.json").read_text())["status"] == "diverged"
    assert [run.info.status for run in runs_by_key(f"sqlite:///{tmp_path / 'mlflow.db'}", "d")[2]] == ["FAILED"] * 2
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'synced.db'}")
    assert sync_run("d", tmp_path / "bad") == "logged"
    assert [run.info.status for run in runs_by_key(f"sqlite:///{tmp_path / 'synced.db'}", "d")[2]] == ["FAILED"]
    assert main([*options, "--out", "good", "--mlflow-experiment", "first"]) == 0
    capsys.readouterr()
    evaluate = ["evaluate", "--run", "good", "--out", "good/eval.json", "--importance-samples", "2"]
    assert main([*evaluate, "--mlflow-experiment", "second"]) == 0
    assert "was trained for the MLflow experiment 'first': not logged to this one" in capsys.readouterr().out
    client, _, runs = runs_by_key(f"sqlite:///{tmp_path / 'synced.db'}", "second")
    assert len(runs) == 1 and "eval_nll_nats" in runs[0].data.metrics
    assert not client.get_metric_history(runs[0].info.run_id, "loss")


def test_a_store_lost_during_an_evaluation_leaves_one_warning_and_the_evaluation(tmp_path, monkeypatch, capsys):
    """The store goes away while a run is evaluated (minutes to hours): the job still writes eval.json and exits 0,
    with one warning, before and after the evaluate job learned to log a training MLflow lacks."""
    import five.run.evaluate
    from five.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    train = ["train", "--model", "vae", "--dataset", "manifold", "--latent-dim", "2", "--epochs", "1", "--out", "run"]
    assert main(train) == 0  # untracked: MLflow lacks its training
    evaluate_run = five.run.evaluate.evaluate_run

    def evaluated_then_store_lost(*args, **kwargs):
        metrics = evaluate_run(*args, **kwargs)
        monkeypatch.setattr(RunTracker, "_runs_with_key", lambda self: (_ for _ in ()).throw(ConnectionError("down")))
        return metrics

    monkeypatch.setattr(five.run.evaluate, "evaluate_run", evaluated_then_store_lost)
    capsys.readouterr()
    evaluate = ["evaluate", "--run", "run", "--out", "run/eval.json", "--importance-samples", "2"]
    assert main([*evaluate, "--mlflow-experiment", "e"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "failed (down)" in line]
    assert len(warnings) == 1 and (tmp_path / "run" / "eval.json").is_file(), warnings
