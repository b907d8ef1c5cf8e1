# Validation first, then the sweep table (one row per run), wildcard constraints and input functions.
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

from five.base.config import STEP_COST_KEYS, cuda_graph_mode
from five.sweep.claims import STEP_TIME_METRIC
from five.base.errors import ConfigError, FiveError
from five.base.files import GRIDS
from five.sweep.estimate_files import ESTIMATE_FILES, estimated_minutes
from five.sweep.table import (
    LOGS_ROOT,
    MODEL_DIR_PATTERN,
    RESULTS_ROOT,
    config_hash,
    estimate_config,
    evaluation_settings,
    experiment_dir,
    in_key_order,
    point_folder,
    probes_shown,
    reject_duplicate_keys,
    run_folder,
    sweep_seeds,
    sweep_table,
    validate_config,
)
from five.run.tracking import UNTRACKED_WARNING, browse_command, export_tracking_uri, sync_command
from five.data.catalog import FILES as VISION_FILES

SCHEMA = workflow.source_path("../schemas/config.schema.yaml")
try:  # every config problem is one line naming the key, before any job is planned
    for path in workflow.configfiles:
        reject_duplicate_keys(path)
    validate_config(config, SCHEMA)  # one line naming the key; then the schema's defaults are filled in
    RESULTS = experiment_dir(config)  # this experiment's runs, tables, plots, claims and snapshot
    SWEEP = sweep_table(config, RESULTS)
    TRACKING_URI = export_tracking_uri(config["tracking_uri"], RESULTS_ROOT, SWEEP["run_dir"])
except FiveError as error:
    print(f"five: config error: {error}", file=sys.stderr)
    sys.exit(2)
SWEEP_ROWS = {row["run_dir"]: row for row in SWEEP.to_dict("records")}
WILDCARDS = ("{dataset}", "{model}", "{latent_dim}", "{probes}")  # a sweep point's
POINT_PATTERN = point_folder(RESULTS, *WILDCARDS)  # a sweep point: its seeds' runs
RUN_PATTERN = run_folder(RESULTS, *WILDCARDS, "{seed}")
RUN_FOLDERS_GLOB = run_folder(os.path.abspath(RESULTS), "*", "*", "*", "*", "*") + "/"  # for a shell, anywhere
SWEEP_POINTS = {}
for _row in SWEEP_ROWS.values():
    SWEEP_POINTS.setdefault(os.path.dirname(_row["run_dir"]), []).append(_row)
# Jobs run `"$FIVE_PYTHON" -m five.cli`: the package of the Python running Snakemake, passed through the
# environment and never as a rule's parameter (a parameter change reruns jobs, and another interpreter is no
# reason to retrain). A cluster job re-parses this file in its own Snakemake, which sets it there too.
os.environ.update(FIVE_PYTHON=sys.executable)
DATA_DIR = config["data_dir"]
LOGS = experiment_dir(config, LOGS_ROOT)
GPU_LOCKS = f"{RESULTS_ROOT}/.gpu-locks"  # devices are shared by every experiment
MLFLOW_ARTIFACTS = f"{RESULTS_ROOT}/mlflow-artifacts"
ESTIMATE_CSV, ESTIMATE_MD = (f"{RESULTS}/{name}" for name in ESTIMATE_FILES)
# What every table, claims file and snapshot says it was made from
PROVENANCE = {"experiment": config["experiment"], "config_hash": config_hash(config)}
# The validated config, named by its hash: after an edit it is a file no job has made, so its job and everything
# that reads it (the aggregation, hence the tables, plots and claims) rerun whatever Snakemake's records in
# .snakemake/ say (lost records would otherwise leave the old config's tables as they were)
CONFIG_SNAPSHOT = f"{RESULTS}/configs/{PROVENANCE['config_hash']}.yaml"
IMAGE_DATASETS = {"digits", "mnist", "cifar10"}

USES_ESTIMATE = any(
    job.get("runtime") == "estimate"
    for settings in config["datasets"].values()
    for job in settings.get("resources", {}).values()
)
# (the targets are not known to the workflow while it is parsed: the command line names them)
ESTIMATE_ONLY = "estimate" in sys.argv[1:] or ESTIMATE_CSV in sys.argv[1:]
if USES_ESTIMATE and not ESTIMATE_ONLY:
    try:  # before any job is planned: every run of the sweep has its predicted time
        for row in SWEEP.to_dict("records"):
            estimated_minutes(ESTIMATE_CSV, [row], "train", config)
    except ConfigError as error:
        print(f"five: config error: {error}", file=sys.stderr)
        sys.exit(2)


def job_rows(wildcards):
    """The sweep rows a train or evaluate job runs: its sweep point's seeds (pack_seeds), else its one row."""
    if "seed" in wildcards.keys():
        return [sweep_row(wildcards)]
    point = POINT_PATTERN.format(**wildcards)
    if point not in SWEEP_POINTS:
        raise ValueError(f"{point} is not part of the configured sweep")
    return SWEEP_POINTS[point]


def job_seeds(wildcards):
    return [row["seed"] for row in job_rows(wildcards)]


def job_runs(wildcards):
    return [row["run_dir"] for row in job_rows(wildcards)]


def per_job(values):
    """A job's per-run parameter: the list over a sweep point's seeds, or the one run's value as a job per seed
    always had it (also a pack of one's: a changed parameter would rerun every finished job of such a sweep)."""
    return values[0] if len(values) == 1 else values


def job_log(kind):
    """The log of a train or evaluate job: its sweep point's (pack_seeds), else its seed's."""
    return point_folder(f"{LOGS}/{kind}", *WILDCARDS, "seeds.log" if config["pack_seeds"] else "s{seed}.log")


def job_run_files(name):
    """The files `name` of a train or evaluate job's runs, as its output: all seeds of a sweep point (pack_seeds),
    else the one run's."""
    if config["pack_seeds"]:
        return expand(f"{RUN_PATTERN}/{name}", seed=sweep_seeds(config), allow_missing=True)
    return f"{RUN_PATTERN}/{name}"


wildcard_constraints:
    dataset="|".join(sorted(config["datasets"])),
    model=MODEL_DIR_PATTERN,
    latent_dim=r"\d+",
    probes=r"\d+",
    seed=r"\d+",


def sweep_row(wildcards):
    """The sweep row of a job; a path outside the sweep is an error, not a silently invented run."""
    run_dir = RUN_PATTERN.format(**wildcards)
    if run_dir not in SWEEP_ROWS:
        raise ValueError(f"{run_dir} is not part of the configured sweep")
    return SWEEP_ROWS[run_dir]


def data_root(output, name):
    """The data directory, read back from a download rule's first output file."""
    return output[0][: -len(VISION_FILES[name][0]) - 1]


def data_inputs(wildcards):
    """MNIST/CIFAR-10 files a job reads (produced by the download rule when missing); none for the rest."""
    return [f"{DATA_DIR}/{file}" for file in VISION_FILES.get(wildcards.dataset, [])]


def job_resource(rule_name, key, default):
    """A train/evaluate job's cluster resource from datasets.<name>.resources, else `default`; a runtime of
    `estimate` comes from results/estimate.csv (made by `snakemake estimate`) times the safety factor."""

    def lookup(wildcards):
        settings = config["datasets"][wildcards.dataset].get("resources", {})
        value = settings.get(rule_name, {}).get(key, default)
        if value == "estimate":
            return estimated_minutes(ESTIMATE_CSV, job_rows(wildcards), rule_name, config)
        return value

    return lookup


def job_threads(wildcards):
    """CPU threads of a train/evaluate job: datasets.<name>.threads (default 1), also given to PyTorch, so that
    `--cores N` runs N one-thread jobs instead of N jobs of one thread per core each."""
    return config["datasets"][wildcards.dataset]["threads"]


def train_options(wildcards):
    """A train job's options beyond its settings: how it computes its steps, `--compile` (config `compile`) and
    `--cuda-graph MODE` where a data set's cuda_graph is not the default (auto), neither changing a result beyond
    round-off; and `--model-selection last` where the runs will be evaluated at their last epoch (none is then cut
    to its best checkpoint). An empty list for the defaults keeps the parameters, and so Snakemake's rerun
    decision, that jobs had before these options existed (it compares the parameters' values, not their names)."""
    mode = cuda_graph_mode(config["datasets"][wildcards.dataset]["cuda_graph"])
    return (
        (["--compile"] if config["compile"] else [])
        + ([] if mode == "auto" else ["--cuda-graph", mode])
        + (["--model-selection", "last"] if config["model_selection"] == "last" else [])
    )


def run_files(name):
    return [f"{run_dir}/{name}" for run_dir in SWEEP["run_dir"]]


def point_files(name):
    return [f"{point}/{name}" for point in SWEEP_POINTS]


TABLES = [f"{RESULTS}/tables/{name}.{suffix}" for name in ("main", "budget") for suffix in ("csv", "md", "tex")]
PLOTS = [
    f"{RESULTS}/plots/{name}.png"
    for name in ("likelihood_vs_latent_dim", "active_units_vs_latent_dim", "budget_ablation", "training_curves")
]


def step_time_points(dataset):
    """A data set's distinct training configurations as far as a step's cost goes (seeds share one)."""
    points = []
    for row in SWEEP[SWEEP["dataset"] == dataset].to_dict("records"):
        point = {key: None if pd.isna(row.get(key)) else row[key] for key in STEP_COST_KEYS}
        if point not in points:
            points.append(point)
    return [
        {
            key: (int(value) if isinstance(value, float) and value.is_integer() else value)
            for key, value in point.items()
        }
        for point in points
    ]


def step_time_files():
    """The step-time tables the claims need: one per data set a claim on step_time_s covers (its `datasets`, else
    every one)."""
    timed = {
        dataset
        for claim in config.get("claims", {}).get("list", [])
        if claim["metric"] == STEP_TIME_METRIC
        for dataset in claim.get("datasets", config["datasets"])
    }
    return [f"{RESULTS}/{dataset}/step_times.csv" for dataset in config["datasets"] if dataset in timed]


INVOKED = time.time()  # job logs written after it are this invocation's (untracked_job_logs)


def untracked_job_logs():
    """This invocation's job logs that say their job went on without MLflow tracking (the store unreachable)."""
    logs = [path for path in Path(LOGS).rglob("*.log") if path.is_file() and path.stat().st_mtime >= INVOKED]
    return [path for path in logs if UNTRACKED_WARNING in path.read_text(errors="replace")]


def final_outputs():
    """What a run of the workflow makes. The aggregation's own outputs are among them: a failed aggregation
    removes them, and Snakemake ignores a missing intermediate file whose consumers are up to date, so without
    them the next invocation would leave the tables of before as done."""
    aggregated = [f"{RESULTS}/{name}" for name in ("runs.csv", "histories.csv", "timing.md")]
    return TABLES + PLOTS + aggregated + [CONFIG_SNAPSHOT, f"{RESULTS}/claims.md"]


def made_from_runs(path):
    """Whether `path` names this config's hash and is not older than runs.csv: made from the current results."""
    runs = Path(f"{RESULTS}/runs.csv")
    if not (path.is_file() and runs.is_file()):
        return False
    made_from = f"config_hash {PROVENANCE['config_hash']}"
    return made_from in path.read_text(errors="replace") and path.stat().st_mtime >= runs.stat().st_mtime


def claims_current():
    """Whether claims.txt is this config's, made from the current runs.csv (claims.md names its config_hash)."""
    return Path(f"{RESULTS}/claims.txt").exists() and made_from_runs(Path(f"{RESULTS}/claims.md"))


def stale_report_file():
    """The first file a report shows that is not this config's results ('' where none): the snapshot must exist,
    the tables and claims be made from the current runs.csv for this config, the plots not be older."""
    runs, snapshot = Path(f"{RESULTS}/runs.csv"), Path(CONFIG_SNAPSHOT)
    for path in (snapshot, runs):
        if not path.is_file():
            return f"{path} does not exist"
    for path in (Path(f"{RESULTS}/tables/main.md"), Path(f"{RESULTS}/claims.md")):  # they name their config
        if not made_from_runs(path):
            return f"{path} was not made from runs.csv for this config"
    older = [
        path for path in map(Path, TABLES + PLOTS) if not path.is_file() or path.stat().st_mtime < runs.stat().st_mtime
    ]
    return f"{older[0]} is missing or older than {runs}" if older else ""


# `snakemake --report` builds its report from whatever files exist: after an edit whose sweep has not run (or a run
# of some targets only) it would show another config's tables or claims beside this config's snapshot. The check
# runs when Snakemake creates the report, however it was asked for (--report, --reporter, a profile's `report:`
# key, and --report-after-run: a run of the whole config has made them current, one of some targets only has not,
# and its report is refused after the run), not for the estimate's own report.
def refusing_stale_reports(create_report):
    def checked_create_report(*args, **kwargs):
        if not ESTIMATE_ONLY and (stale := stale_report_file()):
            print(
                f"five: the report would not be this config's results ({stale}): run the workflow with this "
                "--configfile and no target first",
                file=sys.stderr,
            )
            sys.exit(2)
        return create_report(*args, **kwargs)

    return checked_create_report


workflow.create_report = refusing_stale_reports(workflow.create_report)
