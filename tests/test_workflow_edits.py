"""The real Snakemake through sequences of config edits on tiny configs: seeds dropped and re-added, evaluation
edits that fail, thread counts, claims edits, model selection. Each invocation must plan and table exactly what
its config says."""

import json

from workflow_runs import assert_results_match_training, planned_jobs, run_snakemake


def test_seeds_dropped_then_readded_across_edits_are_trained_and_evaluated_as_configured(tmp_path):
    """A seed left out while its sweep point was edited comes back trained to the edited settings and evaluated
    afresh: continued (more epochs) or retrained (another step size), never tabled from its old evaluation."""
    digits = {"latent_dims": [2], "epochs": 2, "hidden_width": 8, "importance_samples": 4}
    config = {"experiment": "edits", "seeds": [0, 1], "models": {"vae": {}}, "datasets": {"digits": digits}}
    run_snakemake(tmp_path, config)
    for edit in ({"epochs": 3}, {"lr": 0.002}):
        digits |= edit
        run_snakemake(tmp_path, config | {"seeds": [0]})
        run_snakemake(tmp_path, config)
        assert_results_match_training(tmp_path, "edits")
        for seed in (0, 1):
            record = json.loads((tmp_path / f"results/edits/digits/vae/d2/k0/s{seed}/train.json").read_text())
            assert {key: record["config"][key] for key in edit} == edit


def test_an_evaluation_edit_whose_evaluations_failed_is_never_tabled_from_the_old_ones(tmp_path):
    """An edit of how runs are evaluated (model_selection) whose evaluations fail: every later invocation
    evaluates again (and fails again, naming the cause) instead of tabling the old evaluations as the edited
    config's (Snakemake ignores a missing eval.json whose runs.csv is up to date; runs.csv depends on the points'
    settings.json too)."""
    digits = {"latent_dims": [2], "epochs": 2, "hidden_width": 8, "importance_samples": 4}
    config = {"experiment": "evaledit", "seeds": [0], "models": {"vae": {}}, "datasets": {"digits": digits}}
    run_snakemake(tmp_path, config)
    run_dir = tmp_path / "results/evaledit/digits/vae/d2/k0/s0"
    (run_dir / "checkpoint.pt").unlink()  # `last` cannot be evaluated now
    edited = config | {"model_selection": "last"}
    for attempt in range(2):
        result = run_snakemake(tmp_path, edited, check=False)
        assert result.returncode != 0, (attempt, result.stderr[-2000:])
        assert (
            "checkpoint.pt"
            in result.stdout
            + result.stderr
            + (tmp_path / "logs").joinpath("evaledit/evaluate/digits/vae/d2/k0/seeds.log").read_text()
        )
    caption = (tmp_path / "results/evaledit/tables/main.md").read_text()  # still the old config's, and saying so
    assert "evaluated at the epoch with the best validation NLL" in caption and "at the last epoch" not in caption
    assert "Best per column in bold; evaluated" in caption  # no budget to name (no fif or five): no empty part


def test_step_times_are_retimed_when_their_thread_count_changes(tmp_path):
    """A side-by-side step time depends on the threads it ran on (`threads:` is no parameter Snakemake tracks):
    changing a data set's threads retimes its steps, before a cost claim pairs them."""
    digits = {"latent_dims": [2], "epochs": 1, "hidden_width": 8, "importance_samples": 4}
    claim = {"id": "C", "statement": "s", "kind": "ratio_at_most", "model": "five", "against": ["vae"]}
    config = {
        "experiment": "timed",
        "seeds": [0],
        "models": {"vae": {}, "five": {}},
        "datasets": {"digits": digits},
        "claims": {"list": [claim | {"metric": "step_time_s", "factor": 3}]},
    }
    target = "results/timed/digits/step_times.csv"
    run_snakemake(tmp_path, config, target)
    unchanged = run_snakemake(tmp_path, config, target, "-n")
    assert "Nothing to be done" in unchanged.stdout + unchanged.stderr
    digits["threads"] = 2
    assert planned_jobs(run_snakemake(tmp_path, config, target, "-n")) == {"step_times": 1}


def test_a_cost_claim_times_only_the_data_sets_it_covers(tmp_path):
    """A claim on step_time_s restricted to some data sets (`datasets`) plans the timing jobs of those alone: a
    timing of another data set is a device job whose result no claim reads."""
    tiny = {"latent_dims": [2], "epochs": 1, "hidden_width": 8, "importance_samples": 4}
    claim = {"id": "C", "statement": "s", "kind": "ratio_at_most", "model": "five", "against": ["vae"], "factor": 3}
    config = {
        "experiment": "timedsome",
        "seeds": [0],
        "models": {"vae": {}, "five": {}},
        "datasets": {"digits": tiny, "manifold": tiny},
        "claims": {"list": [claim | {"metric": "step_time_s", "datasets": ["manifold"]}]},
    }
    planned = run_snakemake(tmp_path, config, "-n")
    assert planned_jobs(planned)["step_times"] == 1 and "results/timedsome/manifold/step_times.csv" in planned.stdout
    claim_on_both = claim | {"metric": "step_time_s"}
    assert (
        planned_jobs(run_snakemake(tmp_path, config | {"claims": {"list": [claim_on_both]}}, "-n"))["step_times"] == 2
    )


def test_the_claims_are_printed_only_where_they_are_this_configs(tmp_path):
    """A run of other targets (only the tables) after a claims edit leaves claims.* as they were: the closing
    summary says so instead of printing them as the edited config's answer."""
    digits = {"latent_dims": [2], "epochs": 1, "hidden_width": 8, "importance_samples": 4}
    claim = {"id": "C", "kind": "below_latent_dim", "model": "vae", "metric": "active_units"}
    config = {"experiment": "said", "seeds": [0], "models": {"vae": {}}, "datasets": {"digits": digits}}
    first = run_snakemake(tmp_path, config | {"claims": {"list": [claim | {"statement": "first wording"}]}})
    assert "Do the paper's claims hold?" in first.stdout + first.stderr and "first wording" in first.stdout
    assert "Not all of these are this config's results" not in first.stdout
    edited = config | {"claims": {"list": [claim | {"statement": "second wording"}]}}
    tables_only = run_snakemake(tmp_path, edited, "results/said/tables/main.md")
    text = tables_only.stdout + tables_only.stderr
    assert "Do the paper's claims hold?" not in text
    assert "Not all of these are this config's results yet (results/said/claims.md was not made" in text
    runs_only = run_snakemake(tmp_path, edited | {"seeds": [0, 1]}, "--until", "aggregate")  # tables left as were
    assert (
        "Not all of these are this config's results yet (results/said/tables/main.md was not made" in runs_only.stdout
    )
    complete = run_snakemake(tmp_path, edited).stdout
    assert "second wording" in complete and "Not all of these are this config's results" not in complete


def test_train_jobs_know_when_their_runs_are_evaluated_at_the_last_epoch(tmp_path):
    """`model_selection: last` reaches the train jobs (none of their runs is then cut to a best checkpoint,
    which would leave nothing to evaluate); the default adds nothing to their command, so no job reruns."""
    digits = {"latent_dims": [2], "epochs": 1, "hidden_width": 8, "importance_samples": 4}
    config = {"experiment": "last", "seeds": [0], "models": {"vae": {}}, "datasets": {"digits": digits}}
    for selection, expected in (("best", False), ("last", True)):
        planned = run_snakemake(tmp_path, config | {"model_selection": selection}, "-n", "-p")
        commands = [line for line in planned.stdout.splitlines() if "five.cli train" in line]
        assert len(commands) == 1 and ("--model-selection last" in commands[0]) == expected, commands
