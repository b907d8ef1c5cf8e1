"""The real Snakemake on a tiny config: train → evaluate → MLflow → tables → plots → report, then config
edits checked by dry runs to rerun only what they touch. Also `snakemake --lint`."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from workflow_runs import planned_jobs, run_snakemake, snakemake, snakemake_command

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "experiment": "tiny",
    # a hostile data_dir (space, `;`, `#`): every shell parameter is quoted, so it runs nothing and breaks nothing
    "data_dir": "my data; touch injected #",
    "seeds": [0],
    "models": {"vae": {}, "five": {"probes": [1]}},
    "datasets": {
        "digits": {"latent_dims": [2], "epochs": 2, "hidden_width": 16, "importance_samples": 8, "checkpoint_every": 1},
        # a step size this large makes every run diverge: the tables must show it, not drop it
        "manifold": {"latent_dims": [2], "epochs": 1, "hidden_width": 8, "lr": 1e6},
    },
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    run_snakemake(workdir, TINY)
    return workdir


def test_end_to_end_results_tables_plots_and_report(finished):
    runs = pd.read_csv(finished / "results" / "tiny" / "runs.csv")
    assert len(runs) == 4
    digits, manifold = runs[runs["dataset"] == "digits"], runs[runs["dataset"] == "manifold"]
    assert set(digits["status"]) == {"complete"} and digits["bits_per_dim"].notna().all()
    assert set(manifold["status"]) == {"diverged"} and manifold["error"].str.contains("non-finite").all()
    main = (finished / "results" / "tiny" / "tables" / "main.md").read_text()
    assert "five (K=1, σ fitted)" in main and "vae (σ fitted)" in main and "**" in main and "diverged" in main
    assert "N = 8 importance samples (digits)" in main  # the caption states N and each model's proposal and σ
    assert "five: N(f(x), s·J_f J_fᵀ) with s fitted on validation" in main
    assert (finished / "results" / "tiny" / "tables" / "budget.tex").read_text().startswith("\\begin{table}")
    for name in ("likelihood_vs_latent_dim", "active_units_vs_latent_dim", "budget_ablation", "training_curves"):
        assert (finished / "results" / "tiny" / "plots" / f"{name}.png").stat().st_size > 5000
    assert (finished / "results" / "tiny" / "digits" / "five" / "d2" / "k1" / "s0" / "grids" / "samples.png").exists()
    command = snakemake_command(finished, finished / "config.yaml", "--report", finished / "report.html")
    report = subprocess.run(command, capture_output=True, text=True)
    assert report.returncode == 0, report.stderr[-2000:]
    assert (finished / "report.html").stat().st_size > 10000


def test_a_report_of_files_that_are_not_this_configs_results_is_refused(finished, tmp_path):
    """Snakemake builds a report from whatever files exist: after an edit whose sweep had not run (or a run of
    some targets only) it showed the old config's tables and claims beside the new snapshot, exit 0."""
    from five.sweep.table import config_hash, load_sweep_config

    workdir = tmp_path / "copy"
    shutil.copytree(finished, workdir, symlinks=True, ignore=shutil.ignore_patterns("report.html"))
    results = workdir / "results" / "tiny"
    edited = yaml.safe_load((workdir / "config.yaml").read_text()) | {"claims": {"min_seeds": 2}}
    (workdir / "edited.yaml").write_text(yaml.safe_dump(edited))
    new = config_hash(load_sweep_config(workdir / "edited.yaml"))

    def refusal(config: str, *report: str) -> str:
        report = report or ("--report", str(workdir / "r.html"))
        result = snakemake(snakemake_command(workdir, workdir / config, *report), timeout=300)
        output = (result.stdout + result.stderr).splitlines()
        lines = [line for line in output if line.strip() and not line.startswith("Using profile ")]  # Snakemake's
        assert result.returncode == 2 and len(lines) == 1 and not (workdir / "r.html").exists(), lines
        return lines[0]

    assert f"configs/{new}.yaml does not exist" in refusal("edited.yaml")  # no run of the edit yet
    assert f"configs/{new}.yaml does not exist" in refusal("edited.yaml", f"--report={workdir / 'r.html'}")
    options = ("--reporter", "html", "--report-html-path", str(workdir / "r.html"))
    assert f"configs/{new}.yaml does not exist" in refusal("edited.yaml", *options)
    profile = workdir / "reporting"  # a report asked for by a profile's key, not on the command line
    profile.mkdir()
    (profile / "config.yaml").write_text(yaml.safe_dump({"report": str(workdir / "r.html")}))
    assert f"configs/{new}.yaml does not exist" in refusal("edited.yaml", "--profile", str(profile))
    snapshot = results / "configs" / f"{new}.yaml"
    shutil.copy(next((results / "configs").glob("*.yaml")), snapshot)
    assert "tables/main.md was not made from runs.csv for this config" in refusal("edited.yaml")
    snapshot.unlink()
    later = (results / "runs.csv").stat().st_mtime + 60  # an aggregation after the tables and claims were made
    os.utime(results / "runs.csv", (later, later))
    assert "tables/main.md was not made from runs.csv for this config" in refusal("config.yaml")
    for path in (results / "tables" / "main.md", results / "claims.md"):
        os.utime(path, (later + 1, later + 1))
    assert "tables/main.csv is missing or older than results/tiny/runs.csv" in refusal("config.yaml")
    # a report after a run of some targets only (the snapshot) would show the old tables: refused after that run
    after = ("--cores", "1", "--report", str(workdir / "r.html"), "--report-after-run")
    target = str(snapshot.relative_to(workdir))
    partial = snakemake(snakemake_command(workdir, workdir / "edited.yaml", *after, target), timeout=300)
    assert partial.returncode == 2 and snapshot.is_file() and not (workdir / "r.html").exists(), partial.stderr
    assert "five: the report would not be this config's results" in partial.stderr.strip().splitlines()[-1]
    # a report after a run is of that run's results: the edit's aggregation reruns, then the report is made
    result = snakemake(snakemake_command(workdir, workdir / "edited.yaml", *after), timeout=600)
    assert result.returncode == 0 and (workdir / "r.html").stat().st_size > 10000, result.stderr[-2000:]


def test_config_strings_reach_the_shell_quoted(finished):
    assert not list(finished.rglob("injected")), "a config string was executed by the shell"
    runs = pd.read_csv(finished / "results" / "tiny" / "runs.csv")
    assert (runs.loc[runs["dataset"] == "digits", "status"] == "complete").all()
    log = (finished / "logs" / "tiny" / "train" / "digits" / "vae" / "d2" / "k0" / "seeds.log").read_text()
    assert "done: 2 epochs" in log and "k0/s0 holds checkpoint.pt, best.pt, train.json" in log  # the closing line


def test_every_job_is_in_mlflow_once(finished):
    client = MlflowClient(f"sqlite:///{finished / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    keys = sorted(run.data.tags["five.run_key"] for run in runs)
    # the identity is the run folder's absolute path: another checkout's runs in the same experiment differ
    assert keys == sorted(
        str((finished / run_dir).resolve())
        for run_dir in pd.read_csv(finished / "results" / "tiny" / "runs.csv")["run_dir"]
    )
    for run in runs:
        if "digits" in run.data.tags["five.run_key"]:
            assert run.info.status == "FINISHED" and "eval_nll_nats" in run.data.metrics
            assert len(client.get_metric_history(run.info.run_id, "loss")) == 2
            assert len(client.get_metric_history(run.info.run_id, "val_nll")) == 2  # eval_every 1 (epochs/20)
        else:
            assert run.info.status == "FAILED"  # diverged


def test_config_edits_rerun_only_what_they_touch(finished):
    nothing = planned_jobs(run_snakemake(finished, TINY, "-n"))
    assert nothing == {}
    more_seeds = TINY | {"seeds": [0, 1]}
    assert planned_jobs(run_snakemake(finished, more_seeds, "-n")) == {
        "train": 4,
        "evaluate": 4,
        "aggregate": 1,
        "tables": 1,
        "plots": 1,
        "claims": 1,
        "config_snapshot": 1,
        "all": 1,
    }
    # a job per seed instead of per sweep point: the finished seeds' commands are those of a pack of one
    assert planned_jobs(run_snakemake(finished, more_seeds | {"pack_seeds": False}, "-n")) == {
        "train": 4,
        "evaluate": 4,
        "aggregate": 1,
        "tables": 1,
        "plots": 1,
        "claims": 1,
        "config_snapshot": 1,
        "all": 1,
    }
    more_samples = yaml.safe_load(yaml.safe_dump(TINY))
    more_samples["datasets"]["digits"]["importance_samples"] = 16
    assert planned_jobs(run_snakemake(finished, more_samples, "-n")) == {
        "point_settings": 2,
        "evaluate": 2,
        "aggregate": 1,
        "tables": 1,
        "plots": 1,
        "claims": 1,
        "config_snapshot": 1,
        "all": 1,
    }
    # both at once: the finished seeds' digits evaluations rerun for their samples although their sweep points'
    # train jobs rerun for the new seed (Snakemake checks no own reason of a job downstream of a rerun job);
    # packed, each point's one evaluate job has all its seeds; a job per seed, the old seeds' are jobs of their own
    both = more_samples | {"seeds": [0, 1]}
    for pack_seeds, evaluations in ((True, 4), (False, 6)):
        plan = run_snakemake(finished, both | {"pack_seeds": pack_seeds}, "-n")
        assert planned_jobs(plan) == {
            "point_settings": 2,
            "train": 4,
            "evaluate": evaluations,
            "aggregate": 1,
            "tables": 1,
            "plots": 1,
            "claims": 1,
            "config_snapshot": 1,
            "all": 1,
        }
        evaluated = re.findall(r"^rule evaluate:\n\s+input: .*\n\s+output: (.*)$", plan.stdout, re.MULTILINE)
        outputs = {path for line in evaluated for path in line.split(", ")}
        assert {
            f"results/tiny/digits/{model}/d2/k{k}/s{seed}/eval.json"
            for model, k in (("vae", 0), ("five", 1))
            for seed in (0, 1)
        } <= outputs, evaluated
    longer = yaml.safe_load(yaml.safe_dump(TINY))
    longer["datasets"]["digits"]["epochs"] = 3
    assert planned_jobs(run_snakemake(finished, longer, "-n")) == {
        "point_training": 2,  # the points' training.json: their train jobs read it, their evaluations depend on it
        "train": 2,
        "evaluate": 2,
        "aggregate": 1,
        "tables": 1,
        "plots": 1,
        "claims": 1,
        "config_snapshot": 1,
        "all": 1,
    }


def test_the_order_in_which_the_config_lists_the_seeds_changes_no_job(finished):
    """A pack's command listed its seeds and run folders in the config's order: `seeds: [1, 0]` after [0, 1]
    changed every train and evaluate job's parameters, and Snakemake reran them all."""
    commands = []
    for seeds in ([0, 1], [1, 0]):
        plan = run_snakemake(finished, TINY | {"seeds": seeds}, "-n", "-p")
        commands.append(sorted(line for line in (plan.stdout + plan.stderr).splitlines() if "five.cli" in line))
    assert len(commands[0]) == 8 and commands[0] == commands[1], commands  # 4 points: a train and an evaluate job each


def test_a_config_whose_keys_are_merely_reordered_reruns_nothing(finished):
    """The config snapshot, the claims and the aggregation took mappings of the config as parameters, which
    Snakemake compares as written: moving a key (`sigma:` above `models:`) reran the aggregation and all after it.
    The order of the models and data sets is the tables' order, so those are kept as they are."""
    (snapshot,) = (finished / "results" / "tiny" / "configs").glob("*.yaml")
    config = yaml.safe_load(snapshot.read_text())  # the validated config the results were last made with

    def reversed_keys(value, kept_order=False):
        if not isinstance(value, dict):
            return value
        keys = list(value) if kept_order else list(value)[::-1]
        return {key: reversed_keys(value[key], key in ("models", "datasets")) for key in keys}

    assert planned_jobs(run_snakemake(finished, config, "-n")) == {}
    config["datasets"]["digits"]["reference"] = [{"model": "vae", "latent_dim": 2, "value": 90.0, "source": "a paper"}]
    run_snakemake(finished, config)  # tables it beside the results
    reordered = yaml.safe_dump(reversed_keys(config), sort_keys=False)
    assert reordered != yaml.safe_dump(config, sort_keys=False)
    assert planned_jobs(run_snakemake(finished, reordered, "-n")) == {}


def test_more_epochs_continue_from_the_checkpoint(finished, tmp_path):
    longer = yaml.safe_load(yaml.safe_dump(TINY))
    longer["datasets"]["digits"]["epochs"] = 3
    run_snakemake(finished, longer)
    log = (finished / "logs" / "tiny" / "train" / "digits" / "vae" / "d2" / "k0" / "seeds.log").read_text()
    assert "resuming" in log and "after epoch 2/3" in log
    runs = pd.read_csv(finished / "results" / "tiny" / "runs.csv")
    assert set(runs.loc[runs["dataset"] == "digits", "epochs_completed"]) == {3}
    client = MlflowClient(f"sqlite:///{finished / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    assert len(client.search_runs([experiment.experiment_id])) == 4  # replaced, not duplicated


def test_an_edit_of_results_without_snakemakes_records_is_refused_not_left_as_done(finished, tmp_path):
    """Results copied into another checkout without .snakemake/ (Snakemake's records, which alone rerun a job for
    changed settings): the config's snapshot, named by its hash, is still a new file after an edit, so the
    aggregation reruns, and it refuses to table the old runs under the new config, naming the job to rerun; an
    edit the runs satisfy is tabled, and going back to the copied config reruns the aggregation again."""
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy, ignore=shutil.ignore_patterns(".snakemake"), symlinks=True)
    # the config the shared results were last made with (an earlier test may have edited them)
    (snapshot,) = (copy / "results" / "tiny" / "configs").glob("*.yaml")
    copied = yaml.safe_load(snapshot.read_text())
    safer = copied | {"estimate_safety_factor": copied["estimate_safety_factor"] + 1}  # trains nothing
    run_snakemake(copy, safer)
    assert not snapshot.exists() and len(list(snapshot.parent.glob("*.yaml"))) == 1  # the edit's snapshot alone
    back = run_snakemake(copy, copied, "-n")
    assert f"configs/{snapshot.name}" in back.stdout  # the copied config's own snapshot, made again
    assert planned_jobs(back) == {"config_snapshot": 1, "aggregate": 1, "tables": 1, "plots": 1, "claims": 1, "all": 1}
    patient = yaml.safe_load(yaml.safe_dump(safer))
    patient["datasets"]["digits"]["patience"] = 5
    tables = copy / "results" / "tiny" / "tables" / "main.md"
    before = tables.read_text()
    refused = run_snakemake(copy, patient, check=False)
    text = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "trained with patience = None, but the config says 5" in text, text[-3000:]
    assert "--forcerun train" in text and tables.read_text() == before


def test_a_copied_checkout_reruns_nothing_and_an_edit_there_logs_whole_mlflow_runs(finished, tmp_path):
    """A checkout copied (or moved) elsewhere with its results and Snakemake's records plans nothing: the runs'
    MLflow identities (their absolute folders) were the train and evaluate jobs' parameters, so every job reran and
    the whole sweep was evaluated again. An evaluation edit there reruns the evaluations alone, and each joins a
    whole MLflow run under its new identity (its training logged from train.json), not an evaluation alone."""
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy, symlinks=True)
    (snapshot,) = (copy / "results" / "tiny" / "configs").glob("*.yaml")
    copied = yaml.safe_load(snapshot.read_text())  # the config the shared results were last made with
    assert planned_jobs(run_snakemake(copy, copied, "-n")) == {}
    more_samples = yaml.safe_load(yaml.safe_dump(copied))
    samples = more_samples["datasets"]["digits"]["importance_samples"] = (
        copied["datasets"]["digits"]["importance_samples"] + 8
    )
    log = run_snakemake(copy, more_samples)
    assert planned_jobs(log)["evaluate"] == 2 and "train" not in planned_jobs(log)
    client = MlflowClient(f"sqlite:///{copy / 'results' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    moved = {run.data.tags["five.run_key"]: run for run in runs if str(copy.resolve()) in run.data.tags["five.run_key"]}
    assert sorted(moved) == [
        str((copy / f"results/tiny/digits/{m}/d2/k{k}/s0").resolve()) for m, k in (("five", 1), ("vae", 0))
    ]
    for run in moved.values():
        assert run.info.status == "FINISHED" and run.data.metrics["eval_importance_samples"] == samples
        assert len(client.get_metric_history(run.info.run_id, "loss")) == copied["datasets"]["digits"]["epochs"]
    # the copied store's experiment keeps the original's artifact folder (MLflow's), and each job says so once
    job_log = (copy / "logs/tiny/evaluate/digits/vae/d2/k0/seeds.log").read_text()
    assert job_log.count(f"keeps its artifacts in {(finished / 'results' / 'mlflow-artifacts').resolve()}") == 1


def test_a_refused_aggregation_is_refused_again_not_left_as_done(finished, tmp_path):
    """After a finished sweep, a run's eval.json is damaged (its time stamp kept, so only a forced aggregation
    reads it): the aggregation refuses it and Snakemake removes runs.csv; every later invocation of the same
    config refuses it again, instead of 'Nothing to be done' beside the tables made before."""
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy, ignore=shutil.ignore_patterns(".snakemake"), symlinks=True)
    (snapshot,) = (copy / "results" / "tiny" / "configs").glob("*.yaml")
    config = yaml.safe_load(snapshot.read_text())
    evaluation = copy / "results/tiny/digits/vae/d2/k0/s0/eval.json"
    made = evaluation.stat()
    evaluation.write_text(evaluation.read_text()[:100])
    os.utime(evaluation, ns=(made.st_atime_ns, made.st_mtime_ns))
    for attempt, forced in enumerate((["--forcerun", "aggregate"], [], [])):
        refused = run_snakemake(copy, config, *forced, check=False)
        text = refused.stdout + refused.stderr
        assert refused.returncode != 0 and "eval.json is damaged" in text, (attempt, text[-3000:])


def test_lint_is_clean():
    result = subprocess.run(
        snakemake_command(ROOT, ROOT / "config" / "quick.yaml", "--lint"), capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0 and "Lints for" not in result.stdout + result.stderr, result.stdout[-3000:]


def test_a_config_typo_stops_the_workflow_with_the_key_named(tmp_path):
    bad = yaml.safe_load(yaml.safe_dump(TINY))
    bad["datasets"]["digits"]["epochz"] = 3
    result = run_snakemake(tmp_path, bad, "-n", check=False)
    assert result.returncode != 0
    assert (
        "invalid config at datasets.digits: Additional properties are not allowed ('epochz' was unexpected)"
        in result.stdout + result.stderr
    )
    assert not (tmp_path / "results").exists()
