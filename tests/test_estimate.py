"""`five estimate`: the extrapolation from a step's timing, the paper config without its data files, and Slurm
runtimes from the estimate in a dry run. (Predicted against measured time is a benchmark: `benchmarks.run
--only estimate`.)"""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from workflow_runs import snakemake, snakemake_command, write_config

from five.base.errors import ConfigError
from five.sweep.estimate import estimate_sweep, makespan_hours, predicted_seconds
from five.sweep.table import load_sweep_config, sweep_table

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def test_training_is_predicted_as_steps_times_step_time_plus_validations():
    """The extrapolation itself, from a given timing: epochs × ⌈train / batch⌉ steps, and one validation per
    `eval_every` epochs (the last epoch always validates). How far it is off on real runs is measured by
    `python -m benchmarks.run --only estimate` (a timing, so not a unit test)."""
    from five.run.validation import VALIDATION_EXAMPLES, VALIDATION_SAMPLES

    timing = {"step_s": 0.01, "step_s_packed": 0.004, "posterior_s_per_example": 1e-4, "iwae_s_per_sample": 1e-5}
    sizes = {"train": 1000, "validation": 4000, "test": 500}
    row = {"model": "vae", "epochs": 25, "eval_every": 10, "batch_size": 128, "importance_samples": 50}
    one_validation = VALIDATION_EXAMPLES * (1e-4 + VALIDATION_SAMPLES * 1e-5)
    predicted = predicted_seconds(row, timing, sizes, "learned")
    assert predicted["predicted_train_s"] == pytest.approx(25 * 8 * 0.01 + 3 * one_validation)
    assert predicted["predicted_train_s_packed"] == pytest.approx(25 * 8 * 0.004 + 3 * one_validation)
    assert predicted["predicted_evaluate_s"] == pytest.approx(500 * (1e-4 + 50 * 1e-5))
    small = predicted_seconds(row, timing, sizes | {"validation": 100}, "learned")  # validates on all of its 100
    assert small["predicted_train_s"] == pytest.approx(25 * 8 * 0.01 + 3 * 100 * (1e-4 + VALIDATION_SAMPLES * 1e-5))


def test_a_budget_between_the_timed_ones_is_interpolated_linearly():
    from five.sweep.estimate import TIMING_KEYS, interpolated_timing

    row = {"dataset": "digits", "model": "five", "latent_dim": 8, "probes": 2, "surrogate_point": "mean"}
    row |= {"batch_size": 128, "architecture": "mlp", "hidden_width": 64}
    timings = {tuple(row[key] if key != "probes" else k for key in TIMING_KEYS): {"step_s": float(k)} for k in (1, 5)}
    assert interpolated_timing(row, timings) == {"step_s": pytest.approx(2.0)}


def test_a_packed_sweep_point_pays_its_start_up_once_for_all_its_seeds():
    from five.sweep.estimate import estimate_summary

    estimate = pd.DataFrame(
        {"seed": [0, 1, 2] * 2, "predicted_train_s_packed": [360.0] * 6, "job_startup_s": [36.0] * 6}
    )
    jobs = pd.DataFrame({"train_h": [1.0, 1.0], "evaluate_h": [0.5, 0.5]})
    summary = estimate_summary(estimate, jobs, 1, "a CPU")
    assert "(training 0.62 h)" in summary  # 6 × 360 s of packed steps + 2 points × 36 s of start-up


def test_paper_config_estimates_without_the_image_files(tmp_path):
    config = load_sweep_config(ROOT / "config" / "config.yaml")
    config["datasets"] = {"cifar10": config["datasets"]["cifar10"] | {"latent_dims": [8]}}
    config["models"] = {"vae": {}, "five": {"probes": [1, 2, 8]}}
    sweep = sweep_table(config, str(tmp_path))
    progress = []
    estimate = estimate_sweep(config, sweep, CPU, tmp_path / "no-data-here", log=progress.append)
    assert len(estimate) == len(sweep) == 3 * 4 and not estimate["real_data"].any()
    timed = sorted(line.split("] ")[1].split(":")[0] for line in progress if line.startswith("["))
    assert timed == ["cifar10 five d=8 K=1", "cifar10 five d=8 K=8", "cifar10 vae d=8"]  # as the tables name them
    # 2000 epochs × ceil(40,000 / 128) steps, at least the timed step each
    per_run = estimate.groupby(["model", "probes"])
    steps = 2000 * 313
    assert (estimate["predicted_train_s"] >= steps * estimate["step_s"]).all()
    # K = 2 lies between K = 1 and K = 8 (interpolated), FIVE costs more than the VAE
    five = per_run["step_s"].first().loc["five"]
    assert five.loc[1] < five.loc[2] < five.loc[8]
    assert five.loc[1] > per_run["step_s"].first().loc[("vae", 0)]


def test_makespan_places_the_longest_jobs_first():
    assert makespan_hours([3600, 3600, 7200], 2) == pytest.approx(2.0)
    assert makespan_hours([3600] * 4, 1) == pytest.approx(4.0)
    assert makespan_hours([3600, 7200], 10**23) == pytest.approx(2.0)  # devices beyond one per job stay idle


def current_keys(config_path):
    """Each run folder of the config's sweep → its estimate_key (what an estimate of it must hold)."""
    from five.sweep.table import estimate_key, load_sweep_config, sweep_table

    config = load_sweep_config(config_path)
    return {row["run_dir"]: estimate_key(row, config) for row in sweep_table(config).to_dict("records")}


def slurm_plan(tmp_path, seeds, estimate_rows, pack_seeds=True, device="auto"):
    """The dry run of a manifold sweep (vae and five, d = 2) on the Slurm profile, with `estimate_rows` as its
    estimate.csv (none: no estimate made)."""
    config = yaml.safe_load((ROOT / "config" / "quick.yaml").read_text())
    config["seeds"], config["pack_seeds"], config["device"] = seeds, pack_seeds, device
    config["datasets"] = {
        "manifold": config["datasets"]["manifold"]
        | {"latent_dims": [2], "resources": {"train": {"runtime": "estimate"}, "evaluate": {"runtime": 7}}}
    }
    config["models"] = {"vae": {}, "five": {"probes": [1]}}
    config.pop("claims")  # they name the models left out
    config["estimate_safety_factor"] = 2.0
    config_path = write_config(tmp_path, config)
    if estimate_rows is not None:
        keys = current_keys(config_path)
        estimate_rows = [{"estimate_key": keys[row["run_dir"]]} | row for row in estimate_rows]
        (tmp_path / "results" / "five-quick").mkdir(parents=True, exist_ok=True)
        pd.DataFrame(estimate_rows).to_csv(tmp_path / "results" / "five-quick" / "estimate.csv", index=False)
    return snakemake(
        snakemake_command(tmp_path, config_path, "-n", "--profile", ROOT / "profiles" / "slurm"), timeout=300
    )


def test_slurm_runtimes_come_from_the_estimate(tmp_path):
    missing = slurm_plan(tmp_path, [0], None)
    assert missing.returncode == 2 and "snakemake estimate" in missing.stderr, missing.stderr[-2000:]
    planned = slurm_plan(
        tmp_path,
        [0],
        [
            {
                "run_dir": f"results/five-quick/manifold/{model}/d2/k{k}/s0",
                "predicted_train_s": seconds,
                "predicted_evaluate_s": 5.0,
                "job_startup_s": 4.0,
            }
            for model, k, seconds in (("vae", 0, 100.0), ("five", 1, 3000.0))
        ],
    )
    assert planned.returncode == 0, planned.stderr[-3000:]
    text = planned.stdout + planned.stderr
    # vae: (100 × 2 + 4) s → 4 min; five: (3000 × 2 + 4) s → 101 min; evaluate keeps its hand-set 7
    assert "runtime=4" in text and "runtime=101" in text and "runtime=7" in text, text[-3000:]


def test_an_estimate_made_on_another_kind_of_device_than_the_configs_is_refused(tmp_path):
    """A CPU's times are no GPU job's runtime, nor the other way round; `device: auto` takes either."""
    rows = [
        {
            "run_dir": f"results/five-quick/manifold/{model}/d2/k{k}/s0",
            "predicted_train_s": 100.0,
            "predicted_evaluate_s": 5.0,
            "job_startup_s": 4.0,
            "device": "cuda:0",
        }
        for model, k in (("vae", 0), ("five", 1))
    ]
    assert slurm_plan(tmp_path, [0], rows, device="cuda").returncode == 0
    planned = slurm_plan(tmp_path, [0], rows, device="cpu")
    assert planned.returncode == 2, planned.stderr[-2000:]
    assert "estimate.csv was made on cuda:0, but the config's jobs run on cpu" in planned.stderr


def test_a_predicted_runtime_beyond_any_clusters_limit_is_refused_in_one_line(tmp_path):
    """The schema bounds a runtime the config gives; one the estimate predicts (× the safety factor) is bounded
    alike, else Slurm would refuse every job at submission."""
    rows = [
        {
            "run_dir": f"results/five-quick/manifold/{model}/d2/k{k}/s0",
            "predicted_train_s": seconds,
            "predicted_evaluate_s": 5.0,
            "job_startup_s": 4.0,
        }
        for model, k, seconds in (("vae", 0, 100.0), ("five", 1, 2e7))  # 2e7 s × 2: 666,667 minutes
    ]
    planned = slurm_plan(tmp_path, [0], rows)
    lines = [line for line in planned.stderr.splitlines() if line.strip() and not line.startswith("Using profile")]
    assert planned.returncode == 2 and len(lines) == 1, planned.stderr[-2000:]
    assert "predicts 666,667 minutes for the train job of results/five-quick/manifold/five/d2/k1/s0" in lines[0]


def test_an_estimate_made_for_other_settings_is_refused_not_used(tmp_path):
    """After an edit (e.g. more epochs) the estimate predicts runs that no longer exist: a cluster runtime from
    it would be too short, so planning stops with one line."""
    row = {"predicted_train_s": 100.0, "predicted_evaluate_s": 5.0, "job_startup_s": 4.0}
    rows = [
        {"run_dir": f"results/five-quick/manifold/{model}/d2/k{k}/s0", "estimate_key": key} | row
        for model, k, key in (("vae", 0, None), ("five", 1, "made-for-fewer-epochs"))
    ]
    planned = slurm_plan(tmp_path, [0], [{key: value for key, value in r.items() if value} for r in rows])
    assert planned.returncode == 2, planned.stderr[-2000:]
    assert "an estimate made for other settings for results/five-quick/manifold/five/d2/k1/s0" in planned.stderr


@pytest.mark.parametrize(
    "pack_seeds, packed_members, runtimes",
    [
        (True, 2, {"runtime=14", "runtime=201"}),
        (False, 2, {"runtime=11", "runtime=167"}),
        (True, 3, {"runtime=21", "runtime=334"}),  # timed as a pack of 3: its members' solo times instead
    ],
)
def test_a_packed_jobs_runtime_is_its_members_packed_shares(tmp_path, pack_seeds, packed_members, runtimes):
    rows = [
        {
            "run_dir": f"results/five-quick/manifold/{model}/d2/k{k}/s{seed}",
            "predicted_train_s": solo,
            "predicted_train_s_packed": packed,
            "packed_members": packed_members,
            "predicted_evaluate_s": 5.0,
            "job_startup_s": 4.0,
        }
        for model, k, solo, packed in (("vae", 0, 300.0, 200.0), ("five", 1, 5000.0, 3000.0))
        for seed in (0, 1)
    ]
    planned = slurm_plan(tmp_path, [0, 1], rows, pack_seeds)
    assert planned.returncode == 0, planned.stderr[-3000:]
    text = planned.stdout + planned.stderr
    # packed, one job per point: vae (2 × 200 × 2 + 4) s → 14 min, five (2 × 3000 × 2 + 4) s → 201 min;
    # a job per seed: vae (300 × 2 + 4) s → 11 min, five (5000 × 2 + 4) s → 167 min; a pack of 2 from solo
    # times: vae (2 × 300 × 2 + 4) s → 21 min, five (2 × 5000 × 2 + 4) s → 334 min
    assert runtimes <= set(re.findall(r"runtime=\d+", text)), text[-3000:]


def test_fif_pays_a_second_test_pass_where_sigma_is_fitted():
    timing = {"step_s": 0.01, "posterior_s_per_example": 1e-4, "iwae_s_per_sample": 1e-5}
    sizes, row = (
        {"train": 1000, "validation": 100, "test": 500},
        {"epochs": 10, "batch_size": 100, "importance_samples": 50},
    )
    five = predicted_seconds(row | {"model": "five"}, timing, sizes, "fitted")
    fif = predicted_seconds(row | {"model": "fif"}, timing, sizes, "fitted")
    test_pass = 500 * (1e-4 + 50 * 1e-5)
    assert fif["predicted_evaluate_s"] - five["predicted_evaluate_s"] == pytest.approx(test_pass)
    assert predicted_seconds(row | {"model": "fif"}, timing, sizes, "own")["predicted_evaluate_s"] == pytest.approx(
        test_pass
    )
    assert fif["predicted_train_s"] == five["predicted_train_s"]


def test_snakemake_estimate_target_writes_and_prints_the_estimate(tmp_path):
    config = {
        "experiment": "est",
        "seeds": [0, 1],
        "models": {"vae": {}},
        "datasets": {"digits": {"latent_dims": [2], "epochs": 3, "hidden_width": 16, "importance_samples": 4}},
    }
    config_path = write_config(tmp_path, config)
    result = snakemake(snakemake_command(tmp_path, config_path, "--cores", "1", "estimate"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    estimate = pd.read_csv(tmp_path / "results" / "est" / "estimate.csv")
    assert list(estimate["run_dir"]) == ["results/est/digits/vae/d2/k0/s0", "results/est/digits/vae/d2/k0/s1"]
    assert (estimate["predicted_train_s"] > 0).all() and (estimate["predicted_evaluate_s"] > 0).all()
    assert (estimate["predicted_train_s_packed"] > 0).all()  # pack_seeds (the default): the packed step timed
    assert (estimate["packed_members"] == 2).all()  # in a pack of the sweep point's 2 seeds
    assert dict(zip(estimate["run_dir"], estimate["estimate_key"])) == current_keys(config_path)  # this sweep's
    assert "What the sweep of experiment est will cost" in result.stdout + result.stderr  # estimate.md, printed
    assert not (tmp_path / "results" / "est" / "runs.csv").exists()  # the estimate trains nothing


KEYS = ("012345678901", "123456e78901", "000000000123")  # hex keys a CSV reader may take for numbers


def test_a_packed_runs_measured_time_is_compared_with_its_packs_prediction(tmp_path):
    from five.sweep.aggregate import timing_report, with_predicted_times

    predicted = {
        "predicted_train_s": 30.0,
        "predicted_evaluate_s": 1.0,
        "predicted_train_s_packed": 12.0,
        "packed_members": 3,
        "device": "cuda:0",
    }
    pd.DataFrame([{"run_dir": run, "estimate_key": key} | predicted for run, key in zip("abcde", KEYS * 2)]).to_csv(
        tmp_path / "estimate.csv", index=False
    )
    runs = pd.DataFrame(
        [
            {"run_dir": "a", "train_wall_time_s": 36.0, "pack_size": 3},  # the pack's 3 members
            {"run_dir": "b", "train_wall_time_s": 27.0, "pack_size": 1},
            {"run_dir": "c", "train_wall_time_s": 90.0, "pack_size": 1},  # trained after an edit of its settings
            {"run_dir": "d", "train_wall_time_s": 30.0, "pack_size": 2},  # a pack of 2: the estimate timed 3
            {"run_dir": "e", "train_wall_time_s": 90.0, "pack_size": 1, "device": "cpu"},  # timed on a GPU
        ]
    ).fillna({"device": "cuda:1"})
    keys = {"a": KEYS[0], "b": KEYS[1], "c": "0123456789ab", "d": KEYS[0], "e": KEYS[1]}  # c: settings edited
    timed = with_predicted_times(runs, tmp_path / "estimate.csv", keys).set_index("run_dir")
    assert timed.loc["a", "predicted_train_s"] == 36.0 and timed.loc["a", "train_time_ratio"] == 1.0
    assert timed.loc["b", "predicted_train_s"] == 30.0 and timed.loc["b", "train_time_ratio"] == 0.9
    assert timed.loc[["c", "d", "e"], "predicted_train_s"].isna().all()
    assert list(timed["estimate_outdated"]) == [False, False, True, False, True]
    assert list(timed["estimate_unpacked"]) == [False, False, False, True, False]
    identity = {"dataset": "digits", "model": "vae", "latent_dim": 2, "probes": 0, "seed": 0}
    report = timing_report(timed.reset_index().assign(**identity))
    assert "2 runs' estimates were made for other settings" in report and "of 2 runs within" in report
    assert "a pack of M counts M times" in report  # run a is a pack's member, its times the pack's
    solo = timing_report(timed.loc[["b"]].reset_index().assign(**identity))
    assert "of 1 runs within" in solo and "a pack of M" not in solo
    assert "1 runs trained in packs of a size their estimates timed no pack of" in report
    unpacked = runs[runs["run_dir"] == "d"]  # all runs packed, none predicted: the report says why
    report = timing_report(with_predicted_times(unpacked, tmp_path / "estimate.csv", keys).assign(**identity))
    assert "1 runs trained in packs" in report and "No estimate for these runs" not in report
    none = timing_report(runs.assign(**identity))  # no estimate at all: how one made after the sweep is read
    assert "No estimate for these runs" in none and "--forcerun aggregate" in none


def test_an_estimate_holds_across_edits_that_do_not_change_a_runs_time():
    """Patience, checkpoints and the evaluated checkpoint cost nothing a prediction counts; epochs, the network,
    the evaluation's samples and how the job computes its steps (threads, CUDA graph, compile) do. Packing seeds
    does too, but an estimate states the pack size its packed times are of (test above), so the key leaves it
    out: an estimate with packed times serves solo jobs too."""
    from five.sweep.table import estimate_config, estimate_key

    settings = {"model": "vae", "dataset": "digits", "latent_dim": 2, "epochs": 10}
    config = {
        "model_selection": "best",
        "sigma": "own",
        "compile": False,
        "pack_seeds": True,
        "seeds": [0, 1],
        "datasets": {"digits": {"threads": 1, "cuda_graph": "auto", "epochs": 10}},
    }

    def key(training=None, evaluation=None, samples=8, digits=None):
        row = {
            "dataset": "digits",
            "training_json": json.dumps(settings | (training or {})),
            "importance_samples": samples,
        }
        edited = config | (evaluation or {})
        edited["datasets"] = {"digits": config["datasets"]["digits"] | (digits or {})}
        return estimate_key(row, edited)

    assert key() == key({"patience": 3, "checkpoint_every": 5}) == key(evaluation={"model_selection": "last"})
    assert key(digits={"cuda_graph": "on"}) == key(digits={"cuda_graph": True})  # YAML's bare on
    assert key() == key(evaluation={"pack_seeds": False}) == key(evaluation={"seeds": [0, 1, 2, 3]})
    row = {"dataset": "digits", "training_json": json.dumps(settings), "importance_samples": 8}
    assert estimate_key(row, estimate_config(config)) == key()
    keys = {
        key(),
        key({"epochs": 20}),
        key({"hidden_width": 64}),
        key(samples=16),
        key(evaluation={"sigma": "fitted"}),
        key(digits={"threads": 4}),
        key(digits={"cuda_graph": "off"}),
        key(evaluation={"compile": True}),
    }
    assert len(keys) == 8


@pytest.mark.parametrize(
    "text, cause",
    [
        (b"\xff\xfe binary", "is damaged (UnicodeDecodeError"),
        (b"a,b\n1,2\n", "is damaged (KeyError"),
        (b"run_dir,predicted_train_s,job_startup_s\nr,nan,4\n", "predicted_train_s of r is 'nan', not a time"),
        (b"run_dir,predicted_train_s,job_startup_s\nr,inf,4\n", "predicted_train_s of r is 'inf', not a time"),
        (b"run_dir,predicted_train_s,job_startup_s\nr,-5,4\n", "predicted_train_s of r is '-5', not a time"),
        (b"run_dir,predicted_train_s,job_startup_s\nr,abc,4\n", "predicted_train_s of r is 'abc', not a time"),
        (b"run_dir,predicted_train_s\nr,5\n", "job_startup_s of r is None, not a time"),
        (b"run_dir,predicted_train_s,job_startup_s,packed_members\nr,5,4,inf\n", "packed_members of r is 'inf'"),
        (b"run_dir,predicted_train_s,job_startup_s,packed_members\nr,5,4,x\n", "packed_members of r is 'x'"),
    ],
)
def test_a_damaged_estimate_is_one_line_for_a_runtime(tmp_path, text, cause):
    """Tracebacks (ValueError, OverflowError, KeyError, UnicodeDecodeError) and a negative time silently made a
    one-minute runtime."""
    from five.base.errors import ConfigError
    from five.sweep.estimate_files import estimate_seconds, packed_for, read_estimate

    path = tmp_path / "estimate.csv"
    path.write_bytes(text)
    with pytest.raises(ConfigError, match=re.escape(cause)):
        for row in read_estimate(str(path)).values():
            estimate_seconds(row, "predicted_train_s", str(path))
            estimate_seconds(row, "job_startup_s", str(path))
            packed_for(row, 3)


@pytest.mark.parametrize(
    "text, cause",
    [
        (b"", "is damaged (No columns to parse"),
        (b"a,b\n1,2\n", "it lacks run_dir, predicted_train_s, predicted_evaluate_s"),
        (b"run_dir,predicted_train_s,predicted_evaluate_s\nr,abc,4\n", "its predicted_train_s holds values that"),
        (b"run_dir,predicted_train_s,predicted_evaluate_s\nr,inf,4\n", "its predicted_train_s holds values that"),
        (b"run_dir,predicted_train_s,predicted_evaluate_s\nr,-1,4\n", "its predicted_train_s holds values that"),
        (b"run_dir,predicted_train_s,predicted_evaluate_s,packed_members\nr,1,4,x\n", "its packed_members holds"),
    ],
)
def test_a_damaged_estimate_stops_the_aggregation_in_one_line(tmp_path, text, cause):
    from five.base.errors import FiveError
    from five.sweep.aggregate import read_estimate_table

    (tmp_path / "estimate.csv").write_bytes(text)
    with pytest.raises(FiveError, match=re.escape(cause)):
        read_estimate_table(tmp_path / "estimate.csv")


def test_five_estimate_replaces_only_its_own_experiments_estimate_or_a_damaged_one(tmp_path):
    """Another experiment's estimate.csv (even one whose name begins as this one's) is refused before anything
    is timed; this experiment's, or a damaged file, is remade."""
    from five.sweep.estimate_files import check_estimate_of

    path = tmp_path / "estimate.csv"
    for own in ("run_dir,predicted_train_s\nresults/e/digits/vae/d2/k0/s0,1\n", "\xff not a CSV", "predicted\n1\n"):
        path.write_text(own, encoding="latin-1")
        check_estimate_of(path, "results/e")
    path.write_text("run_dir,predicted_train_s\nresults/e/digits/vae/d2/k0/s0,1\nresults/e2/digits/vae/d2/k0/s0,1\n")
    with pytest.raises(ConfigError, match="its run results/e2/digits/vae/d2/k0/s0 is not in results/e/"):
        check_estimate_of(path, "results/e")
