"""What each `five` command does, given its parsed arguments (five.cli parses them): a job's device and GPU
claim, its MLflow runs, the checks of its paths before any compute, and the lines it prints."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from five.base.config import (
    INT64_MAX,
    REQUIRED_SETTINGS,
    SETTING_FIELDS,
    STEP_COST_KEYS,
    TrainConfig,
    check_packable,
    model_dir,
    short_integer,
)
from five.base.errors import ConfigError, FiveError
from five.base.files import (
    BEST_NAME,
    CHECKPOINT_NAME,
    IMAGE_NAMES,
    RUN_OWN_FILES,
    TRAIN_JSON,
    atomic_write,
    check_apart,
    check_not_in_another_run,
    check_output_dir,
    check_output_file,
    check_path,
    is_run_folder,
    local_artifact_folder,
    non_regular_kind,
    read_train_record,
    refuse_non_regular,
    shown_path,
    write_json,
)
from five.base.metrics import is_evaluation_file
from five.data.catalog import input_files


def prepare_job(args, log=print):
    """GPU claim (before CUDA starts), device, and the facts of where the job ran (for train.json)."""
    import torch

    from five.run.device import choose_device
    from five.run.gpus import claim_gpu

    apply_threads(args)
    gpu = claim_gpu(args.gpu_lock_dir, log=log) if args.gpu_lock_dir and args.device != "cpu" else None
    facts = {
        "gpu_claimed": gpu,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "hostname": socket.gethostname(),
        "threads": torch.get_num_threads(),
        "started_at": time.time(),
        "mlflow_experiment": args.mlflow_experiment,  # what mlflow-sync may log the run to
    }
    return choose_device(args.device), facts


def apply_threads(args) -> None:
    """--threads: torch's CPU threads for all the job's work, checks included."""
    import torch

    if args.threads is not None:
        if args.threads < 1:
            raise FiveError(f"--threads must be >= 1, got {args.threads}")
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if args.threads > available:  # oversubscribed: every step slower and its timings skewed (torch crashes
            # outright at some tens of thousands)
            raise FiveError(
                f"--threads {args.threads} (a workflow's datasets.<name>.threads) is more than the {available} "
                "CPUs this job may run on"
            )
        torch.set_num_threads(args.threads)


def make_tracker(args, run_dir: Path, key: str | None = None):
    if not args.mlflow_experiment or getattr(args, "tracking_unavailable", False):  # one warning a job
        return None
    from five.run.tracking import UNTRACKED_WARNING, RunTracker, run_key

    key = key or run_key(run_dir)
    folder = local_artifact_folder(args.mlflow_artifact_location)
    artifacts = str(folder.resolve()) if folder is not None else args.mlflow_artifact_location
    warn = lambda line: print(line, file=sys.stderr)  # noqa: E731
    try:
        return RunTracker(args.mlflow_experiment, key, warn=warn, artifact_location=artifacts)
    except Exception as error:  # the store is down or unreachable: training is never lost to tracking
        args.tracking_unavailable = True
        warn(
            f"{UNTRACKED_WARNING} unavailable ({' '.join(str(error).split())[:300]}); the run goes on "
            "untracked, its JSON files are unaffected (`five mlflow-sync` logs it later)"
        )
        return None


def run_train(args) -> None:
    check_job_options(args, runs=args.out)
    check_one_per_run(args.out, "--mlflow-run-key", args.mlflow_run_key)
    configs = train_configs(args)  # the settings and paths before torch is imported: a mistake is answered at once
    check_packable(configs, args.out)
    reads = read_files([configs[0].dataset], args.data_dir) + ([args.settings] if args.settings else [])
    for out in args.out:
        check_run_folder(out, reads)
    check_artifact_location(args.mlflow_artifact_location, "--mlflow-artifact-location", args.out)
    from five.run.steps import check_cuda_graph_mode
    from five.run.tracking import log_record
    from five.run.train import train_seeds

    device, facts = prepare_job(args)
    check_cuda_graph_mode(args.cuda_graph, device)
    keys = dict(zip(args.out, args.mlflow_run_key or [None] * len(args.out)))
    trackers, recorded = {}, set()  # runs that train; runs recorded anew without training

    def on_train(run):
        trackers[run.out_dir] = start_tracker(args, run.out_dir, keys[run.out_dir], run.config, device)
        return epoch_logger(trackers[run.out_dir])

    def on_recorded(run):  # its train.json changed (an edited schedule replayed): so does its MLflow run, at once
        recorded.add(run.out_dir)
        tracker = make_tracker(args, run.out_dir, keys[run.out_dir])
        if tracker is not None:
            log_record(tracker, run.out_dir, run.result)

    try:
        runs = train_seeds(
            configs,
            args.out,
            device,
            data_dir=args.data_dir,
            restart_if_changed=args.restart_if_changed,
            on_train=on_train,
            extra=facts,
            compile_objective=args.compile,
            cuda_graph=args.cuda_graph,
            needs_last_checkpoint=args.model_selection == "last",
            on_recorded=on_recorded,
        )
    except BaseException:  # no MLflow run is left RUNNING by a job that failed
        for tracker in trackers.values():
            if tracker is not None:
                tracker.finish("FAILED")
        raise
    for run in (run for run in runs if run.out_dir not in trackers.keys() | recorded):  # kept as they are
        log_kept_run(args, run, keys[run.out_dir])
    report_runs(runs, trackers, args.record_divergence)


def log_kept_run(args, run, key: str | None) -> None:
    """A finished run the job kept as it is, logged where MLflow lacks its record; its evaluation is the evaluate
    job's."""
    if args.mlflow_experiment and trained_for_this_experiment(args, run.out_dir, run.result):
        log_training_where_missing(make_tracker(args, run.out_dir, key), run.out_dir, run.result)


def trained_for_this_experiment(args, run_dir: Path, record: dict) -> bool:
    """Whether a run's training may be logged to this job's experiment: not into another one than the one it was
    trained for (as mlflow-sync); says so where not."""
    trained_for = record.get("mlflow_experiment")
    if trained_for in (None, args.mlflow_experiment):
        return True
    print(f"{run_dir} was trained for the MLflow experiment {trained_for!r}: not logged to this one")
    return False


def log_training_where_missing(tracker, run_dir: Path, record: dict) -> bool:
    """A run's training (train.json's `record`) logged where MLflow lacks it: trained by hand, while the store was
    down, or in a checkout since moved or copied (a run's MLflow identity is its absolute folder). False where the
    store failed (one warning; the job goes on untracked)."""
    from five.run.tracking import log_record

    if tracker is None:
        return False
    try:
        complete = tracker.is_complete(record)
    except Exception as error:  # the store went away: training and evaluation are never lost to tracking
        tracker.untracked(error)
        return False
    if not complete:
        log_record(tracker, run_dir, record)
    return True


def log_evaluation(args, tracker, run: Path, out: Path, metrics: dict) -> None:
    """An evaluation into its run's MLflow run, the run's training first where MLflow lacks it."""
    from five.run.tracking import evaluation_metrics, outdated_evaluation_metrics

    record = read_train_record(Path(run) / TRAIN_JSON)
    if trained_for_this_experiment(args, run, record) and not log_training_where_missing(tracker, run, record):
        return
    held = tracker.attach()
    tracker.log_metrics(evaluation_metrics(metrics) | outdated_evaluation_metrics(held, metrics))
    tracker.log_artifacts([out, *metrics.get("image_grids", [])])
    tracker.finish("FAILED" if metrics["status"] == "diverged" else "FINISHED")


def check_run_folder(out: Path, reads: list[Path]) -> None:
    """A train job's --out: a folder that is or can become a run's, its files regular ones, apart from what the job
    reads, neither inside another run nor holding one."""
    check_output_dir(out, "--out")
    for name in (CHECKPOINT_NAME, BEST_NAME, TRAIN_JSON):
        refuse_non_regular(out / name, "--out")
    check_run_files_apart(out, reads)
    check_not_in_another_run(out, out, out.parent, "--out")
    check_holds_no_run(out, "--out")


def check_run_files_apart(out: Path, reads: list[Path]) -> None:
    """A run's own files never replace what its job reads (its settings, data or tracking database named as one
    of them): the first checkpoint would destroy the input."""
    inputs = {Path(path).resolve(): path for path in reads}
    for name in RUN_OWN_FILES:
        read = inputs.get((out / name).resolve())
        if read is not None:
            raise FiveError(
                f"--out {shown_path(out)}: its {name} would overwrite {shown_path(read)}, which this command reads"
            )


def train_configs(args) -> list[TrainConfig]:
    """One configuration per --seed: the settings of --settings, else each from the option of its name
    (--latent-dim → latent_dim); TrainConfig fills in the defaults of what is not given."""
    settings = {name: getattr(args, name) for name in SETTING_FIELDS if getattr(args, name) is not None}
    if args.settings is not None:
        if settings:
            option = "--" + next(iter(settings)).replace("_", "-")
            raise ConfigError(f"--settings gives every setting of the run; {option} may not be given with it")
        settings = read_settings(args.settings)
    elif not set(REQUIRED_SETTINGS) <= settings.keys():
        options = ", ".join("--" + name.replace("_", "-") for name in REQUIRED_SETTINGS)
        raise ConfigError(f"`five train` needs --settings FILE, or the options {options}")
    return [TrainConfig.from_dict({**settings, "seed": seed}) for seed in args.seed]


def read_settings(path: Path) -> dict:
    """A run's settings from a JSON file (a sweep point's training.json): an object of TrainConfig fields,
    each once; a null one is not given."""
    kind = non_regular_kind(path)
    if kind is not None:
        raise ConfigError(f"--settings {path} is {kind}, not a JSON file")
    if not path.exists():
        raise ConfigError(f"--settings {path}: no such file")
    try:
        settings = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=unique_keys)
    except (OSError, ValueError, RecursionError) as error:  # ValueError: JSON and UTF-8 errors, repeated keys
        raise ConfigError(f"--settings {path} is not a readable JSON file ({error})") from None
    if not isinstance(settings, dict):
        raise ConfigError(f"--settings {path}: a JSON object of settings was expected")
    unknown = sorted(set(settings) - set(SETTING_FIELDS))
    if unknown:
        raise ConfigError(
            f"--settings {path}: not settings of a run: {', '.join(map(repr, unknown))} (seeds are given by --seed)"
        )
    return {name: value for name, value in settings.items() if value is not None}  # null: not given, as an option


def unique_keys(pairs: list[tuple]) -> dict:
    """A JSON object whose keys are each given once (json would keep the last of two silently)."""
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"the key(s) {', '.join(map(repr, repeated))} appear more than once")
    return dict(pairs)


def report_runs(runs, trackers: dict, record_divergence: bool) -> None:
    """Each run's end to its MLflow run and one line; a divergence fails the command unless it is recorded."""
    for run in runs:
        tracker = trackers.get(run.out_dir)
        if tracker is not None:
            if run.failure is None:
                tracker.log_metrics({"train_wall_time_s": run.result["wall_time_s"]})
            tracker.log_artifacts([run.out_dir / TRAIN_JSON])
            tracker.finish("FAILED" if run.failure is not None else "FINISHED")
        if run.failure is not None:
            if record_divergence:
                print(
                    f"five: diverged: {run.out_dir}: {run.failure} (recorded in {run.out_dir / TRAIN_JSON})",
                    file=sys.stderr,
                )
            continue
        print(finished_summary(run.result, run.out_dir))
    failure = next((run.failure for run in runs if run.failure is not None), None)
    if failure is not None and not record_divergence:
        raise failure


def finished_summary(record: dict, run_dir: Path) -> str:
    """A finished run's closing line, naming the files its folder holds (a run cut from a longer one has no
    checkpoint.pt of its end, only best.pt)."""
    final = record["history"][-1] if record["history"] else {}
    held = [name for name in (CHECKPOINT_NAME, BEST_NAME, TRAIN_JSON) if (run_dir / name).is_file()]
    return (
        f"done: {record['epochs_completed']} epochs, final loss {final.get('loss')}, wall time "
        f"{record['wall_time_s']:.1f}s; {run_dir} holds {', '.join(held)}"
    )


def start_tracker(args, run_dir: Path, key: str | None, config: TrainConfig, device):
    tracker = make_tracker(args, run_dir, key)
    if tracker is not None:
        tracker.start(
            config.to_dict() | {"device": str(device)}, tags={"model": config.model, "dataset": config.dataset}
        )
    return tracker


def epoch_logger(tracker):
    """Each history entry as MLflow metrics at its epoch (None without a tracker)."""
    if tracker is None:
        return None
    return lambda entry: tracker.log_metrics(
        {key: value for key, value in entry.items() if key != "epoch"}, step=entry["epoch"], flush=False
    )


def check_one_per_run(runs: list, option: str, values: list | None) -> None:
    """Options given per run folder (`--out`, `--mlflow-run-key`, …) come one for each."""
    if values is not None and len(values) != len(runs):
        raise FiveError(f"one {option} per run folder: {len(runs)} folders, {len(values)} given")


def run_evaluate(args) -> None:
    """Evaluates each --run in turn in one process (a sweep point's seeds: one start-up for all); every path,
    record and checkpoint, and whether its weights fit their model, is checked before the first evaluation (the
    paths before torch is imported: a mistyped option is answered at once)."""
    image_dirs = check_evaluation_outputs(args)
    from five.run.evaluate import cached_loader, check_cache_dir, check_evaluable, evaluate_run

    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    if args.cache_dir is not None:
        check_cache_dir(args.cache_dir)
    apply_threads(args)  # the check loads the data and builds each model
    load = cached_loader()  # the check and the evaluations share each data set
    check_evaluable(args.run, args.model_selection, args.data_dir, image_dirs, load)
    device, facts = prepare_job(args, log)
    for run, out, image_dir, key in zip(args.run, args.out, image_dirs, args.mlflow_run_key or [None] * len(args.run)):
        tracker = make_tracker(args, run, key)
        metrics = evaluate_run(
            run,
            device,
            args.importance_samples,
            args.split,
            args.batch_size,
            log=log,
            data_dir=args.data_dir,
            image_dir=image_dir,
            model_selection=args.model_selection,
            sigma=args.sigma,
            cache_dir=args.cache_dir,
            load=load,
        )
        write_json(out, metrics | {"job": facts})
        if tracker is not None:
            log_evaluation(args, tracker, run, out, metrics)
        print(evaluation_summary(run, out, metrics))


def check_evaluation_outputs(args) -> list[Path | None]:
    """Every path an evaluate call writes: one per run, each its own, none onto what the call reads, into another
    run's folder or into another output's place. Returns the runs' image folders (None: no grids)."""
    for option, values in (("--run", args.run), ("--out", args.out), ("--image-dir", args.image_dir)):
        check_one_per_run(args.run, option, values)
        if values is not None:  # run folders are only read: one may hold another (a run and one it superseded)
            check_apart(values, option, nested=option != "--run")
    check_job_options(args)
    check_one_per_run(args.run, "--mlflow-run-key", args.mlflow_run_key)
    image_dirs = args.image_dir or [None] * len(args.run)
    protected = evaluation_files(args.run, image_dirs, args.data_dir)
    for run, out, image_dir in zip(args.run, args.out, image_dirs):
        check_evaluation_paths(run, out, image_dir, protected)
        check_not_in_another_run(run, out, out.parent, "--out")
        if out.exists() and not is_evaluation_file(out):
            raise FiveError(
                f"--out {shown_path(out)} exists and is no evaluation of five's: it is not replaced (remove it "
                "first if it should go)"
            )
        for folder, option in ((image_dir, "--image-dir"), (args.cache_dir, "--cache-dir")):
            if folder is not None:
                check_not_in_another_run(run, folder, folder, option)
    check_artifact_location(args.mlflow_artifact_location, "--mlflow-artifact-location", args.run)
    artifacts = local_artifact_folder(args.mlflow_artifact_location)
    filled = [(args.cache_dir, "--cache-dir"), (artifacts, "--mlflow-artifact-location")]
    check_outputs_apart(args.out, image_dirs, [(folder, option) for folder, option in filled if folder is not None])
    return image_dirs


def evaluation_files(runs: list[Path], image_dirs: list[Path | None], data_dir: Path | None) -> list[Path]:
    """What an evaluate call must not write its --out onto (besides the runs' own files, which no --out may
    be): the data files and the tracking database it reads, and every image grid it writes."""
    records = [read_train_record(run / TRAIN_JSON) for run in runs if (run / TRAIN_JSON).is_file()]
    datasets = [record.get("config", {}).get("dataset") for record in records]  # checked later, in one line
    grids = [folder / name for folder in image_dirs if folder is not None for name in IMAGE_NAMES]
    return read_files(datasets, data_dir) + grids


def read_files(datasets: list, data_dir: Path | None) -> list[Path]:
    """The files a job reads that no output of it may replace: the data files of `datasets` (five.data.catalog)
    and the SQLite tracking database with the files SQLite and five keep beside it."""
    from five.run.tracking import sqlite_database_files, store_uri

    data = [path for name in datasets if isinstance(name, str) for path in input_files(name, data_dir)]
    return data + sqlite_database_files(store_uri())


def check_evaluation_paths(run: Path, out: Path, image_dir: Path | None, protected: list[Path]) -> None:
    if not run.is_dir():
        raise FiveError(f"--run {run} is not a run folder (train it first with `five train --out {run}`)")
    if image_dir is not None:
        check_output_dir(image_dir, "--image-dir")
        for name in IMAGE_NAMES:
            refuse_non_regular(image_dir / name, "--image-dir")
    check_output_file(out, "--out", protected=protected)


def check_outputs_apart(outs: list[Path], image_dirs: list[Path | None], filled: list[tuple[Path, str]]) -> None:
    """No file an evaluation writes (an --out, a grid) is, or lies in the place of, another path it writes, nor
    lies among the files five or MLflow name in a folder of theirs (`filled`: the cache, the artifact store): the
    later write would fail, or replace the other, after the evaluation was computed."""
    folders = [(folder.resolve(), "--image-dir", folder) for folder in image_dirs if folder is not None]
    grids = [(folder / name, option, given) for folder, option, given in folders for name in IMAGE_NAMES]
    files = [(out.resolve(), "--out", out) for out in outs] + grids
    kept = [(folder.resolve(), option, folder) for folder, option in filled]
    for index, (file, option, given) in enumerate(files):
        for path, other, named in files[:index] + files[index + 1 :] + folders + kept:
            if path == file or file in path.parents:
                raise FiveError(
                    f"{option} {shown_path(given)} and {other} {shown_path(named)} overlap: a file of one would lie "
                    "where the other writes"
                )
        for path, other, named in kept:
            if file.parent == path:
                raise FiveError(f"{option} {shown_path(given)} lies in {other} {shown_path(named)}, among its files")


def check_holds_no_run(folder: Path, option: str) -> None:
    """A run's folder holds no other run's folder (a sweep point's folder given for its seed's would make each
    of its runs one that lies in another)."""
    children = sorted(folder.iterdir()) if folder.is_dir() else []
    inner = next((child for child in children if is_run_folder(child)), None)
    if inner is not None:
        raise FiveError(
            f"{option} {shown_path(folder)} holds the run folder {shown_path(inner)}: give a run's own folder"
        )


def evaluation_summary(run: Path, out: Path, metrics: dict) -> str:
    if metrics["status"] == "diverged":
        return f"{run} diverged: {metrics['error']}; wrote {out}"
    bits = metrics["bits_per_dim"]
    lines = [
        f"{metrics['config']['model']} on {metrics['config']['dataset']} ({metrics['split']} split, "
        f"{metrics['n_examples']} examples, {metrics['importance_samples']} importance samples): "
        f"NLL {metrics['nll_nats']:.3f} nats"
        + (f", {bits:.4f} bits/dim" if bits is not None else "")
        + f", ELBO {metrics['elbo_nats']:.3f} nats, ESS {metrics['ess_mean']:.1f}, "
        f"active units {metrics['active_units']} (eigen {metrics['active_units_eigen']}), "
        f"σ {metrics['sigma']:.4f} ({metrics['sigma_policy']}); wrote {out}"
    ]
    if metrics.get("nll_nats_own_sigma") is not None:
        lines.append(f"at its own fixed σ {metrics['sigma_own']:.4f}: NLL {metrics['nll_nats_own_sigma']:.3f} nats")
    if "posterior_covariance_error" in metrics:
        lines.append(
            f"posterior vs truth on {metrics['posterior_examples']} examples: covariance error "
            f"{metrics['posterior_covariance_error']:.3f}; true NLL {metrics['true_nll_nats']:.3f} nats, "
            f"model {metrics['model_nll_nats_same_examples']:.3f} nats"
        )
    lines += [f"wrote {path}" for path in metrics.get("image_grids", [])]
    return "\n".join(lines)


def run_time_steps(args) -> None:
    configs = step_configs(args.points, args.dataset)  # the options before torch is imported
    if not 2 <= args.rounds <= INT64_MAX:
        raise FiveError(
            f"--rounds must be from 2 (pairs for an interval) to 2^63 - 1, got {short_integer(args.rounds)}"
        )
    check_output_file(args.out, "--out", protected=read_files([args.dataset], args.data_dir))
    check_not_in_another_run(None, args.out, args.out.parent, "--out")
    check_job_options(args)
    import pandas as pd

    from five.data.datasets import load_dataset
    from five.run.steps import check_cuda_graph_mode, graphed_or_eager
    from five.run.timing import side_by_side_step_times

    dataset = load_dataset(args.dataset, args.data_dir)
    device, _ = prepare_job(args)
    check_cuda_graph_mode(args.cuda_graph, device)
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731

    rows, _ = graphed_or_eager(
        lambda graphed: side_by_side_step_times(
            configs, dataset, device, graphed, args.rounds, compile_objective=args.compile, log=log
        ),
        args.cuda_graph,
        device,
        log,
    )
    name = torch_device_name(device)
    table = pd.DataFrame(
        [
            {
                "dataset": row["dataset"],
                **timing_row_key(row),
                "round": row["round"],
                "step_time_s": row["step_time_s"],
                "device": name,
            }
            for row in rows
        ]
    )
    atomic_write(args.out, lambda file: file.write(table.to_csv(index=False).encode()))
    print(f"timed {len(configs)} configurations × {args.rounds} rounds on {name}; wrote {args.out}")


def step_configs(points_json: str, dataset: str) -> list[TrainConfig]:
    """`--points` (a JSON list of configurations) as training configurations, each checked as `five train`
    checks its options."""
    import json

    try:
        points = json.loads(points_json, object_pairs_hook=unique_keys)
    except (ValueError, RecursionError) as error:  # ValueError: JSON errors, huge integers, repeated keys
        raise FiveError(f"--points is not valid JSON ({error})") from None
    if not isinstance(points, list) or not points or not all(isinstance(point, dict) for point in points):
        raise FiveError("--points must be a non-empty JSON list of objects")
    for point in points:
        unknown = set(point) - set(STEP_COST_KEYS)
        if unknown:
            known = ", ".join(STEP_COST_KEYS)
            raise FiveError(f"--points: unknown key(s) {', '.join(sorted(unknown))} (known: {known})")
    configs = [
        TrainConfig.from_dict({"dataset": dataset, **{key: value for key, value in point.items() if value is not None}})
        for point in points
    ]
    check_distinct_rows(configs)
    return configs


def timing_row_key(settings: dict) -> dict:
    """What names a configuration in the timing table: its model folder, d and K."""
    model = model_dir(settings["model"], settings.get("surrogate_point"))
    return {"model": model, "latent_dim": settings["latent_dim"], "probes": settings["probes"]}


def check_distinct_rows(configs: list[TrainConfig]) -> None:
    """Each point is its own row of the timing table, which the claims pair by round: two points that differ
    only in what the table does not show would pass for one."""
    keys = [timing_row_key(config.to_dict()) for config in configs]
    for index, key in enumerate(keys):
        if key in keys[:index]:
            shown = ", ".join(f"{name} {value}" for name, value in key.items())
            raise FiveError(
                f"--points {keys.index(key) + 1} and {index + 1} are one row of the table ({shown}): they differ "
                "only in settings it does not show"
            )


def run_download(args) -> None:
    from five.data.catalog import data_dir_choice
    from five.data.vision import download_vision_dataset

    data_dir, origin = data_dir_choice(args.data_dir)
    check_not_in_another_run(None, data_dir, data_dir, origin)
    files = download_vision_dataset(args.dataset, data_dir, origin)
    print(f"{args.dataset}: {len(files)} files in place, e.g. {files[0]}")


def run_estimate(args) -> None:
    from five.run.gpus import MAX_GPU_COUNT
    from five.sweep.estimate_files import ESTIMATE_FILES, check_estimate_of
    from five.sweep.table import experiment_dir, load_sweep_config, sweep_table

    if not 1 <= args.gpus <= MAX_GPU_COUNT:
        raise FiveError(f"--gpus must be from 1 to {MAX_GPU_COUNT}, got {short_integer(args.gpus)}")
    config = load_sweep_config(args.configfile)
    args.out_dir = args.out_dir or Path(experiment_dir(config))
    check_output_dir(args.out_dir, "--out-dir")
    check_not_in_another_run(None, args.out_dir, args.out_dir, "--out-dir")
    for name in ESTIMATE_FILES:  # both, before anything is timed
        check_output_file(args.out_dir / name, "--out-dir", protected=[args.configfile])
    check_estimate_of(args.out_dir / ESTIMATE_FILES[0], experiment_dir(config))
    from five.run.device import choose_device  # torch, only now
    from five.sweep.estimate import estimate_sweep, write_estimate

    device = choose_device(args.device)
    name = torch_device_name(device)
    estimate = estimate_sweep(
        config,
        sweep_table(config, experiment_dir(config)),
        device,
        args.data_dir or Path(config["data_dir"]),
        pack_seeds=args.pack_seeds,
    )
    summary = write_estimate(estimate, args.out_dir, args.gpus, name, config["experiment"])
    print(f"{summary}\nwrote {' and '.join(str(args.out_dir / name) for name in ESTIMATE_FILES)}")


def torch_device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def check_artifact_location(location: str | None, option: str, runs: list[Path] = ()) -> None:
    """A local artifact location is checked as check_artifact_folder checks a path."""
    check_artifact_folder(local_artifact_folder(location), option, runs)


def check_job_options(args, runs: list[Path] = ()) -> None:
    """A job's MLflow run keys and artifact store mean something only where it logs to an experiment, its
    tracking store and GPU locks lie outside every run's folder (`runs`: those the job makes)."""
    if args.gpu_lock_dir is not None:
        check_not_in_another_run(None, args.gpu_lock_dir, args.gpu_lock_dir, "--gpu-lock-dir", planned=runs)
    for option, value in (
        ("--mlflow-run-key", args.mlflow_run_key),
        ("--mlflow-artifact-location", args.mlflow_artifact_location),
    ):
        if value is not None and not args.mlflow_experiment:
            raise FiveError(f"{option} is given without --mlflow-experiment, which it needs: nothing would be logged")
    if args.mlflow_experiment:
        check_environment_store(runs)


def check_environment_store(runs: list[Path] = ()) -> None:
    """$MLFLOW_TRACKING_URI's store (check_tracking_store), before torch loads; `runs`: the command's new runs."""
    from five.run.tracking import check_tracking_store, environment_tracking_uri

    check_tracking_store(environment_tracking_uri(), "MLFLOW_TRACKING_URI", runs)


def check_artifact_folder(folder: Path | None, option: str, runs: list[Path] = ()) -> None:
    """An artifact store's folder (None: MLflow's default) must be a folder or makeable as one, outside every run's
    folder, the command's own `runs` included, new ones too (MLflow fills it with folders of its own)."""
    if folder is None:
        return
    check_path(folder, option)
    check_output_dir(folder, option)
    check_not_in_another_run(None, folder, folder, option, planned=runs)
    holding = [run for run in runs if folder.resolve() in run.resolve().parents]
    if holding:
        raise FiveError(f"{option} {shown_path(folder)} holds the run folder {shown_path(holding[0])}")


def run_mlflow_init(args) -> None:
    from five.run.tracking import ensure_experiment, store_in_use

    check_artifact_location(args.artifact_location, "--artifact-location")
    check_environment_store()
    with mlflow_errors_as_one_line():
        experiment_id = ensure_experiment(args.experiment, artifact_location=args.artifact_location)
    print(f"MLflow experiment {args.experiment!r} (id {experiment_id}) is ready; {store_in_use()}")


def run_mlflow_sync(args) -> None:
    from five.run.tracking import store_in_use, sync_inputs, sync_run

    check_artifact_location(args.artifact_location, "--artifact-location")
    check_environment_store()
    for run_dir in args.runs:  # all checked before the first is logged
        if not run_dir.is_dir():
            raise FiveError(f"{run_dir} is not a run folder")
        check_holds_no_run(run_dir, "run")
        sync_inputs(run_dir.resolve(), args.experiment)
    print(store_in_use())
    for run_dir in args.runs:
        with mlflow_errors_as_one_line():
            outcome = sync_run(
                args.experiment, run_dir, args.artifact_location, warn=lambda line: print(line, file=sys.stderr)
            )
        print(f"{run_dir}: {outcome}")


@contextmanager
def mlflow_errors_as_one_line():
    """The MLflow commands' own failures (an unreachable server, a file that is not a database, a store MLflow
    refuses) as one line: MLflow and SQLAlchemy raise many types, none of them ours."""
    try:
        yield
    except FiveError:
        raise
    except Exception as error:
        uri = os.environ.get("MLFLOW_TRACKING_URI", "MLflow's default store")
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise FiveError(f"MLflow at {uri} failed: {first}") from None
