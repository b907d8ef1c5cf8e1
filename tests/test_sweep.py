"""Config validation, the sweep table and aggregation into tables (no Snakemake run needed)."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from five.base.config import TrainConfig
from five.base.errors import ConfigError, FiveError
from five.sweep.aggregate import (
    attach_references,
    collect_runs,
    evaluation_caption,
    summarise,
    with_own_sigma_rows,
    write_tables,
)
from five.sweep.table import check_config, sweep_table, validate_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def load(name):
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    validate_config(config, SCHEMA)  # checks and fills in the defaults, as the workflow does
    return config


def test_shipped_configs_are_valid_and_budgets_multiply_only_fif_and_five():
    paper = sweep_table(load("config.yaml"))
    assert len(paper) == 2 * (1 + 1 + 4 + 4) * 4 * 3
    assert set(paper.loc[paper["model"].isin(["vae", "fcvae"]), "probes"]) == {0}
    assert set(paper.loc[paper["model"] == "five", "probes"]) == {1, 2, 4, 8}
    assert paper["run_dir"].is_unique
    quick = sweep_table(load("quick.yaml"))
    assert len(quick) == 2 * (1 + 1 + 1 + 2) * 2 * 2
    assert set(quick["dataset"]) == {"digits", "manifold"}


def test_defaults_come_from_the_schema():
    config = load("quick.yaml")
    assert config["datasets"]["digits"]["batch_size"] == 128 and config["data_dir"] == "data"
    assert config["tracking_uri"] is None


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["models"].update({"gan": {}}), "'gan' was unexpected"),
        (lambda c: c["datasets"]["digits"].update({"epochz": 3}), "at datasets.digits: .*'epochz' was unexpected"),
        (lambda c: c["datasets"]["digits"].update({"latent_dims": [-2]}), "at datasets.digits.latent_dims.0: -2"),
        (lambda c: c["datasets"].update({"imagenet": {"latent_dims": [2], "epochs": 1}}), "'imagenet' was unexpected"),
        (lambda c: c["models"]["vae"].update({"probes": [1]}), "at models.vae: .*'probes' was unexpected"),
        (lambda c: c.update({"seed": [0]}), "'seed' was unexpected"),
        (lambda c: c.update({"data_dir": "-h"}), "data_dir '-h' starts with '-', which its jobs would read as an"),
        (
            lambda c: c.update({"device": "cpu"}) or c["datasets"]["manifold"].update({"cuda_graph": True}),
            "datasets.manifold.cuda_graph = on needs a CUDA device, but device is cpu",
        ),
    ],
)
def test_bad_configs_fail_with_one_line_naming_the_key(edit, message):
    config = yaml.safe_load((ROOT / "config" / "quick.yaml").read_text())
    edit(config)
    with pytest.raises(ConfigError, match=message) as caught:
        check_config(config, SCHEMA)
    assert "\n" not in str(caught.value)


def test_a_budget_above_a_latent_dim_is_an_error_naming_both():
    config = load("quick.yaml")
    config["models"]["five"]["probes"] = [1, 8]
    with pytest.raises(ConfigError, match="models.five.probes has K=8 > latent dim 2 of datasets.digits"):
        sweep_table(config)


def test_a_rows_training_settings_are_its_runs_config_but_the_seed():
    config = load("quick.yaml")
    config["datasets"]["digits"]["log_sigma_lr"] = 0.05
    config["models"]["fif"]["beta"] = 4
    table = sweep_table(config).set_index("run_dir")
    five = table.loc["results/five-quick/digits/five/d4/k2/s1"]
    assert json.loads(five["training_json"]) == {
        "model": "five",
        "dataset": "digits",
        "latent_dim": 4,
        "probes": 2,
        "surrogate_point": "mean",
        "epochs": 30,
        "batch_size": 128,  # the schema's default, filled in by the validation
        "lr": 0.002,
        "log_sigma_lr": 0.05,
        "hidden_width": 128,
        "checkpoint_every": 10,
    }
    assert TrainConfig(**json.loads(five["training_json"]), seed=1) == TrainConfig(
        model="five", dataset="digits", latent_dim=4, probes=2, epochs=30, lr=0.002, log_sigma_lr=0.05,
        hidden_width=128, checkpoint_every=10, seed=1,
    )  # fmt: skip
    vae = json.loads(table.loc["results/five-quick/digits/vae/d2/k0/s0", "training_json"])
    assert vae["probes"] == 0 and "beta" not in vae and "surrogate_point" not in vae
    fif = json.loads(table.loc["results/five-quick/digits/fif/d2/k1/s0", "training_json"])
    assert fif["beta"] == 4 and "log_sigma_lr" not in fif  # FIF's σ is fixed by β: the data set's rate is not its
    point = table.index.str.contains("digits/five/d4/k2")
    assert set(table.loc[point, "training_json"]) == {five["training_json"]}  # every seed of a point: one training.json


EVALUATED = {"model_selection": "best", "sigma": "own"}  # how the fake runs were evaluated


def fake_run(root, dataset, model, latent_dim, probes, seed, bits, status="complete"):
    run_dir = root / dataset / model / f"d{latent_dim}" / f"k{probes}" / f"s{seed}"
    run_dir.mkdir(parents=True)
    settings = {"model": model, "dataset": dataset, "latent_dim": latent_dim, "probes": probes, "epochs": 1}
    config = TrainConfig.from_dict(settings | {"seed": seed}).to_dict()
    train = {
        "config": config,
        "status": status,
        "history": [{"epoch": 1, "loss": 3.0, "sigma": 0.1, "time_s": 0.1}],
        "epochs_completed": 1,
        "wall_time_s": 0.1,
        "device": "cpu",
    }
    if status == "diverged":
        train["error"] = "non-finite loss (nan) at epoch 1, step 2"
    evaluation = {
        "status": "diverged" if status == "diverged" else "complete",  # a stalled run's evaluation is complete
        "bits_per_dim": None if status == "diverged" else bits,
        "nll_nats": None if status == "diverged" else bits * 100,
        "config": config,
        "importance_samples": 8,
    }
    (run_dir / "train.json").write_text(json.dumps(train))
    (run_dir / "eval.json").write_text(json.dumps(evaluation))
    return {
        "dataset": dataset,
        "model": model,
        "latent_dim": latent_dim,
        "probes": probes,
        "seed": seed,
        "run_dir": str(run_dir),
        "importance_samples": 8,
        "training_json": json.dumps(settings),
    }


def test_tables_show_mean_std_best_in_bold_references_and_divergence(tmp_path):
    rows = [
        fake_run(tmp_path, "digits", "vae", 4, 0, 0, 5.0),
        fake_run(tmp_path, "digits", "vae", 4, 0, 1, 5.2),
        fake_run(tmp_path, "digits", "five", 4, 1, 0, 4.0),
        fake_run(tmp_path, "digits", "five", 4, 1, 1, 4.4),
        fake_run(tmp_path, "digits", "five", 4, 2, 0, 3.0),
        fake_run(tmp_path, "digits", "five", 4, 2, 1, 0, status="diverged"),
        fake_run(tmp_path, "digits", "fcvae", 4, 0, 0, 0, status="diverged"),
    ]
    runs, histories = collect_runs(pd.DataFrame(rows), EVALUATED)
    assert list(runs["status"]).count("diverged") == 2 and len(histories) == 7
    assert (runs["epochs"] == 1).all() and (runs["lr"] == TrainConfig(model="vae", dataset="x", latent_dim=2).lr).all()
    table = attach_references(
        summarise(runs, {"five": 1}), {"digits": [{"model": "five", "latent_dim": 4, "value": 4.1}]}
    )
    five = table[table["row"] == "five (K=1)"].iloc[0]
    assert five["mean"] == pytest.approx(4.2) and five["std"] == pytest.approx(0.2828, abs=1e-4)
    assert bool(five["best"]) and five["reference"] == 4.1
    general = {"model": "five", "latent_dim": 4, "value": 9.0}
    specific = general | {"probes": 1, "value": 4.1}
    for entries in ([general, specific], [specific, general]):  # the entry of K = 1 wins, in either order
        shown = attach_references(summarise(runs, {"five": 1}), {"digits": entries}).set_index("row")
        assert shown.loc["five (K=1)", "reference"] == 4.1
    assert "five (K=2)" not in set(table["row"])  # the main table shows the chosen budget only
    paths = write_tables(table, tmp_path / "tables" / "main", "Title", "Caption.")
    markdown = paths[1].read_text()
    assert "**4.200 ± 0.283** [ref 4.100]" in markdown and "5.100 ± 0.141" in markdown
    assert "| fcvae " in markdown and "diverged" in markdown  # a fully diverged row is shown, not dropped
    assert r"\textbf{4.200 $\pm$ 0.283}" in paths[2].read_text()
    ablation = summarise(runs[runs["probes"] > 0])
    k2 = ablation[ablation["row"] == "five (K=2)"].iloc[0]
    assert k2["mean"] == 3.0 and k2["diverged"] == 1 and bool(k2["best"])
    assert "(1/2 diverged)" in write_tables(ablation, tmp_path / "budget", "T", "C")[1].read_text()


def test_the_plots_show_every_run_the_tables_count(tmp_path, monkeypatch):
    """Runs stopped early by patience (stalled) are results, counted and marked by the tables: the figures plot
    them too (they plotted complete runs only: 63 of the evidence sweep's 105 runs were missing), and leave out
    diverged ones. Each plotted line's mean at a d is the table's mean there."""
    from five.sweep import plots

    rows = [
        fake_run(tmp_path, "digits", "vae", 2, 0, 0, 5.0),
        fake_run(tmp_path, "digits", "vae", 2, 0, 1, 6.0, status="stalled"),
        fake_run(tmp_path, "digits", "vae", 2, 0, 2, 0, status="diverged"),
        fake_run(tmp_path, "digits", "five", 2, 1, 0, 4.0, status="stalled"),
        fake_run(tmp_path, "digits", "five", 2, 1, 1, 4.5),
    ]
    runs, _ = collect_runs(pd.DataFrame(rows), EVALUATED)
    plotted = []
    draw = plots._seed_band_lines
    monkeypatch.setattr(
        plots, "_seed_band_lines", lambda data, **encoding: plotted.append(data) or draw(data, **encoding)
    )
    plots.likelihood_vs_latent_dim(runs, {"five": 1}, tmp_path / "a.png")
    plots.budget_ablation(runs, tmp_path / "b.png")
    table = summarise(runs, {"five": 1}).set_index("model")["mean"]
    likelihood, budget = plotted
    assert len(likelihood) == 4 and likelihood.groupby("model")["metric"].mean().to_dict() == table.to_dict()
    assert len(budget) == 2 and budget["metric"].mean() == table["five"]


def test_a_fixed_sigma_row_counts_its_diverged_seeds(tmp_path):
    """FIF evaluated with a fitted σ also reports its NLL at its own fixed σ, a row of its own: a diverged FIF seed
    has neither number and is counted in both rows, not dropped from the fixed one (it read 1 seed, none
    diverged, beside the fitted row's "1/2 diverged")."""
    rows = [
        fake_run(tmp_path, "digits", "fif", 2, 1, 0, 4.0),
        fake_run(tmp_path, "digits", "fif", 2, 1, 1, 0, status="diverged"),
        fake_run(tmp_path, "digits", "vae", 2, 0, 0, 5.0),
        fake_run(tmp_path, "digits", "vae", 2, 0, 1, 0, status="diverged"),  # a VAE's σ is no fixed one
    ]
    for row in rows:
        path = Path(row["run_dir"]) / "eval.json"
        evaluation = json.loads(path.read_text()) | {"sigma_policy": "fitted", "proposal": "q"}
        if evaluation["status"] == "complete" and row["model"] == "fif":
            evaluation |= {"nll_nats_own_sigma": 450.0, "bits_per_dim_own_sigma": 4.5, "sigma_own": 0.22}
        path.write_text(json.dumps(evaluation))
    runs, _ = collect_runs(pd.DataFrame(rows), {"model_selection": "best", "sigma": "fitted"})
    table = summarise(with_own_sigma_rows(runs), {"fif": 1}).set_index("row")
    fitted, fixed = table.loc["fif (K=1, σ fitted)"], table.loc["fif (K=1, σ fixed)"]
    assert (fitted["mean"], fitted["seeds"], fitted["diverged"]) == (4.0, 2, 1)
    assert (fixed["mean"], fixed["seeds"], fixed["diverged"]) == (4.5, 2, 1)
    assert table.loc["vae (σ fitted)", "seeds"] == 2 and "vae (σ fixed)" not in table.index
    # evaluated at its own σ (sigma: own), FIF has one row, the fixed one: each seed counted once
    own = runs[runs["model"] == "fif"].assign(sigma_policy="fixed", nll_nats_own_sigma=float("nan"))
    fixed_only = summarise(with_own_sigma_rows(own), {"fif": 1}).set_index("row")
    assert list(fixed_only.index) == ["fif (K=1, σ fixed)"] and fixed_only.iloc[0]["seeds"] == 2
    # a caption defines the σ policies of its own table's rows: the budget ablation has no fixed-σ row
    assert "fixed = FIF's s = 1/(2β)" in evaluation_caption(with_own_sigma_rows(runs))
    assert "fixed =" not in evaluation_caption(runs[runs["probes"] != 0])


def test_latex_tables_escape_their_text_and_spell_symbols_as_latex(tmp_path):
    """The .tex tables compile with pdflatex: captions and row labels (config_hash, J_f, σ, β, ·, ᵀ, a data set
    named after its file) have LaTeX's special characters escaped and five's symbols in LaTeX's spelling."""
    from five.sweep.aggregate import SIGMA_POLICY_MEANING, latex_text

    assert latex_text("config_hash a1; s·J_f J_fᵀ; 5% & #1; σ fitted") == (
        r"config\_hash a1; s$\cdot$J\_f J\_f$^{\top}$; 5\% \& \#1; $\sigma$ fitted"
    )
    assert latex_text("q(z|x)") == r"q(z\textbar{}x)"
    assert latex_text(r"a\b~c^d{e}$") == r"a\textbackslash{}b\textasciitilde{}c\textasciicircum{}d\{e\}\$"
    points = (("vae", 0, 4, 5.0), ("five", 1, 4, 4.0), ("vae", 0, 8, 5.0))  # five has no run at d = 8
    rows = [
        fake_run(tmp_path, "digits", model, d, k, seed, nll + seed) for model, k, d, nll in points for seed in (0, 1)
    ]
    runs, _ = collect_runs(pd.DataFrame(rows), EVALUATED)
    runs = runs.assign(sigma_policy="fitted")
    caption = f"{'; '.join(SIGMA_POLICY_MEANING.values())}; proposals: N(f(x), s·J_f J_fᵀ). Made from: config_hash 1f"
    tex = write_tables(summarise(runs, {"five": 1}), tmp_path / "main", "Test likelihood", caption)[2].read_text()
    assert tex.isascii(), [character for character in tex if not character.isascii()]
    assert r"config\_hash 1f" in tex and r"five (K=1, $\sigma$ fitted)" in tex and r"\textbf{" in tex
    text = re.sub(r"\$[^$]*\$", "", tex)  # math spans
    text = re.sub(r"\\[a-zA-Z]+|\\[^a-zA-Z]", "", text)  # commands and escaped characters
    assert not set("_^%#~$") & set(text), text
    rows = [line for line in tex.splitlines() if line.startswith(("five", "vae", "model"))]
    assert len(rows) == 3 and all(line.count("&") == 2 for line in rows), rows
    assert r"five (K=1, $\sigma$ fitted) & \textbf{4.500 $\pm$ 0.707} &  \\" in rows, rows  # blank: not run at d=8
    assert "nan" not in (tmp_path / "main.md").read_text()


def test_the_evaluation_caption_lists_each_distinct_proposal_of_a_model():
    """A model evaluated on a data set with a validation split and on an npz without one has two proposals (σ
    fitted on other examples): the caption lists both, not whichever run comes first."""
    from five.sweep.aggregate import evaluation_caption

    fitted = "N(f(x), s·J_f J_fᵀ) with s fitted on "
    runs = pd.DataFrame(
        {
            "dataset": ["digits", "npz:d.npz", "npz:d.npz"],
            "model": ["five", "five", "vae"],
            "status": "complete",
            "importance_samples": 8,
            "proposal": [fitted + "validation", fitted + "the first 40 training examples", "q"],
            "sigma_policy": "fitted",
            "nll_nats_own_sigma": float("nan"),
        }
    )
    caption = evaluation_caption(runs)
    assert f"five: {fitted}the first 40 training examples / {fitted}validation; vae: q." in caption, caption


def test_the_main_caption_names_the_budgets_of_the_models_it_tables():
    """The budget of each model the main table shows, and only of models with runs (`five` is swept only as its
    `sample` variant in a config of `surrogate_points: [sample]`); no empty part where none has a budget."""
    from five.sweep.aggregate import main_caption

    shown = {"fif": 2, "five": 1, "five-sample": 1}
    runs = pd.DataFrame({"model": ["vae", "fif", "five-sample"]})
    assert main_caption(runs, shown, "evaluated at the best epoch") == (
        "Best per column in bold; fif at K=2; five-sample at K=1; evaluated at the best epoch; diverged runs are "
        "marked, not dropped."
    )
    assert main_caption(runs[runs["model"] == "vae"], shown, "last").startswith("Best per column in bold; last; ")


def test_plots_are_written_even_without_fif_five_or_completed_runs(tmp_path):
    from five.sweep import plots

    rows = [
        fake_run(tmp_path, "digits", "vae", 2, 0, 0, 5.0),
        fake_run(tmp_path, "digits", "vae", 4, 0, 0, 4.0),
        fake_run(tmp_path, "manifold", "vae", 2, 0, 0, 0, status="diverged"),
    ]
    runs, histories = collect_runs(pd.DataFrame(rows), EVALUATED)
    for path in (
        plots.likelihood_vs_latent_dim(runs, {}, tmp_path / "a.png"),
        plots.active_units_vs_latent_dim(runs.assign(active_units_eigen=2), {}, tmp_path / "b.png"),
        plots.budget_ablation(runs, tmp_path / "c.png"),
        plots.training_curves(histories, {}, tmp_path / "d.png"),
        plots.likelihood_vs_latent_dim(runs[runs["status"] == "diverged"], {}, tmp_path / "e.png"),
    ):
        assert path.stat().st_size > 1000


def test_plots_say_how_many_diverged_runs_they_leave_out_and_draw_only_the_swept_d(tmp_path, monkeypatch):
    """A line drops a diverged run (no number): the legend says how many (the tables count them); the y = d line
    of no collapse spans the d its data set sweeps, and the training curves have a panel per swept (data set, d)
    only, none empty."""
    from five.sweep import plots

    rows = [fake_run(tmp_path, "digits", "vae", d, 0, seed, 5.0) for d in (2, 8) for seed in (0, 1)]
    rows += [
        fake_run(tmp_path, "manifold", "vae", 2, 0, 0, 5.0),
        fake_run(tmp_path, "manifold", "vae", 2, 0, 1, 0, "diverged"),
    ]
    runs, histories = collect_runs(pd.DataFrame(rows), EVALUATED)
    runs = runs.assign(active_units_eigen=2.0)
    figures = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: figures.append(figure) or path)
    plots.active_units_vs_latent_dim(runs, {}, tmp_path / "a.png")
    plots.training_curves(histories.assign(val_nll=1.0), {}, tmp_path / "c.png")
    (active, curves) = figures
    assert "1 diverged run(s) left out" in active.legends[0].get_title().get_text()
    diagonals = {
        axis.get_title().splitlines()[-1]: line.get_xdata().tolist()
        for axis in active.axes
        for line in axis.get_lines()
        if line.get_label() == "y = d"
    }
    assert diagonals == {"digits": [2, 8], "manifold": [2]}
    assert sorted(axis.get_title() for axis in curves.axes if axis.get_visible()) == [
        "digits, d = 2",
        "digits, d = 8",
        "manifold, d = 2",
    ]


@pytest.mark.parametrize("name", ["digits", "manifold"])
def test_the_shapes_the_dry_run_knows_are_the_loaders(name):
    from five.data.catalog import DATA_SHAPES
    from five.data.datasets import load_dataset

    assert load_dataset(name).example_shape == DATA_SHAPES[name]


def test_surrogate_points_are_a_five_axis_with_their_own_folders_and_arguments():
    config = {
        "seeds": [0],
        "models": {"vae": {}, "five": {"probes": [1, 2], "surrogate_points": ["mean", "sample"]}},
        "datasets": {"digits": {"latent_dims": [4], "epochs": 1, "importance_samples": 8}},
    }
    table = sweep_table(config, "results")
    five = table[table["model"] == "five"]
    assert len(five) == 4 and len(table) == 5  # K × point for five only; the VAE has no such axis
    assert set(five["run_dir"]) == {
        "results/digits/five/d4/k1/s0",
        "results/digits/five/d4/k2/s0",
        "results/digits/five-sample/d4/k1/s0",
        "results/digits/five-sample/d4/k2/s0",
    }
    sample = five[five["run_dir"] == "results/digits/five-sample/d4/k1/s0"].iloc[0].to_dict()
    assert json.loads(sample["training_json"])["surrogate_point"] == "sample"
    vae = table[table["model"] == "vae"].iloc[0].to_dict()
    assert "surrogate_point" not in json.loads(vae["training_json"]) and vae["run_dir"] == "results/digits/vae/d4/k0/s0"
    assert json.loads(five.iloc[0]["training_json"])["surrogate_point"] == "mean"


def test_the_schemas_defaults_are_the_codes():
    """A default lives in five.base.config; the workflow schema (YAML, which cannot import it) repeats the ones
    Snakemake fills in, and must agree; so must its bound on `gpus` with `five estimate --gpus`'s."""
    from five.base.config import DEFAULT_BATCH_SIZE, DEFAULT_FIF_BETA, DEFAULT_IMPORTANCE_SAMPLES, DEFAULT_LR
    from five.run.gpus import MAX_GPU_COUNT
    from five.sweep.estimate_files import MAX_RUNTIME_MINUTES

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    found = {}

    def walk(node, key=None):
        if isinstance(node, dict):
            if key in ("beta", "batch_size", "lr", "importance_samples") and "default" in node:
                found[key] = node["default"]
            for name, child in node.items():
                walk(child, name)
        elif isinstance(node, list):
            for child in node:
                walk(child, key)

    walk(schema)
    assert found == {
        "beta": DEFAULT_FIF_BETA,
        "batch_size": DEFAULT_BATCH_SIZE,
        "lr": DEFAULT_LR,
        "importance_samples": DEFAULT_IMPORTANCE_SAMPLES,
    }
    assert schema["properties"]["gpus"]["maximum"] == MAX_GPU_COUNT
    runtime = schema["$defs"]["job_resources"]["properties"]["runtime"]["oneOf"][0]
    assert runtime["maximum"] == MAX_RUNTIME_MINUTES


@pytest.mark.parametrize(
    "train_changes, evaluation_changes, refusal",
    [
        ({}, {}, None),
        ({"status": "stalled"}, {}, None),
        ({}, {"model_selection": "last", "checkpoint_epoch": 1}, None),
        ({"best_epoch": 6, "epochs_completed": 6}, {}, "evaluated epoch 1, but its training's best epoch is 6"),
        ({"epochs_completed": 6}, {"model_selection": "last"}, "evaluated epoch 1, but its training's last epoch is 6"),
        ({"status": "running"}, {}, "its training has not finished (train.json says 'running')"),
        # found without a likelihood bound when evaluated: tabled as diverged, if of the checkpoint training ended with
        ({}, {"status": "diverged", "nll_nats": None}, None),
        ({"best_epoch": 6}, {"status": "diverged"}, "evaluated epoch 1, but its training's best epoch is 6"),
    ],
)
def test_a_run_is_tabled_only_from_an_evaluation_of_its_finished_training(
    tmp_path, train_changes, evaluation_changes, refusal
):
    """An eval.json of another checkpoint than the one its run's training ended with (an evaluation older than
    the training), or a training that has not finished, stops the aggregation naming the run."""
    row = fake_run(tmp_path, "digits", "vae", 4, 0, 0, 5.0)
    for name, changes, fields in (
        ("train.json", train_changes, {"best_epoch": 1}),
        ("eval.json", evaluation_changes, {"model_selection": "best", "checkpoint_epoch": 1}),
    ):
        path = Path(row["run_dir"]) / name
        path.write_text(json.dumps(json.loads(path.read_text()) | fields | changes))
    assert_tabled_or_refused(row, {"model_selection": evaluation_changes.get("model_selection", "best")}, refusal)


def assert_tabled_or_refused(row, evaluated, refusal):
    """The run of `row` is tabled (`refusal` None), or the aggregation refuses it in a line naming it and `refusal`
    (the config evaluating as EVALUATED, updated by `evaluated`)."""
    if refusal is None:
        assert len(collect_runs(pd.DataFrame([row]), EVALUATED | evaluated)[0]) == 1
    else:
        with pytest.raises(FiveError, match=re.escape(refusal)) as raised:
            collect_runs(pd.DataFrame([row]), EVALUATED | evaluated)
        assert row["run_dir"] in str(raised.value)


@pytest.mark.parametrize(
    "record, changes, refusal",
    [
        ("train.json", {}, None),
        ("train.json", {"lr": 0.01}, "trained with lr = 0.01, but the config says 0.0005: its train job did not rerun"),
        ("train.json", {"epochs": 2}, "trained with epochs = 2, but the config says 1"),
        (
            "eval.json",
            {"hidden_width": 7},
            "evaluated a checkpoint trained with hidden_width = 7, but the config says 256: its evaluate job",
        ),
        ("eval.json", {"epochs": 2, "patience": 3}, None),  # best.pt saved before a schedule edit that kept the run
        ("eval.json", {"seed": 5}, "evaluated a checkpoint trained with seed = 5, but the config says 0"),
    ],
)
def test_a_run_is_tabled_only_from_a_training_with_its_sweep_rows_settings(tmp_path, record, changes, refusal):
    """A train or evaluate job that Snakemake did not rerun after an edit (its records lost) left a run of
    another config: the aggregation refuses it, naming the run and the setting, instead of tabling it."""
    row = fake_run(tmp_path, "digits", "vae", 4, 0, 0, 5.0)
    path = Path(row["run_dir"]) / record
    stored = json.loads(path.read_text())
    path.write_text(json.dumps(stored | {"config": stored["config"] | changes}))
    assert_tabled_or_refused(row, {}, refusal)


DAMAGED_VALUES = [
    ({}, None),
    ({"nll_nats": "x"}, "nll_nats is 'x', not a finite number"),
    ({"nll_nats": float("nan")}, "nll_nats is nan, not a finite number"),
    ({"nll_nats": None}, "nll_nats is None, not a finite number"),
    ({"nll_nats": True}, "nll_nats is True, not a finite number"),
    ({"sigma": float("inf")}, "sigma is inf, not a finite number"),
    ({"active_units_eigen": "many"}, "active_units_eigen is 'many', not a finite number"),
    ({"active_units_eigen": -3}, "active_units_eigen is -3, not a count of directions 0..4"),
    ({"informative_directions": 5}, "informative_directions is 5, not a count of directions 0..4"),
    ({"active_units": 2.5}, "active_units is 2.5, not a count"),
    ({"active_units": 4, "active_units_eigen": 0}, None),
    ({"n_examples": 1, "nll_standard_error": None}, None),  # a test set of one example has no standard error
    ({"n_examples": -3}, "n_examples is -3, not a number of test examples"),
    ({"n_examples": 0.5}, "n_examples is 0.5, not a number of test examples"),
    ({"wall_time_s": 10**400}, "wall_time_s is 1.000e+400, not a finite number"),  # every number: MLflow logs it
    ({"checkpoint_epoch": float("nan")}, "checkpoint_epoch is nan, not a finite number"),
    ({"config": 5}, "its config or status is not as five writes it"),
    ({"status": "fine"}, "its config or status is not as five writes it"),
    ({"discrete_levels": 17, "bits_per_dim": None}, "bits_per_dim is missing, though the data are discrete"),
    ({"discrete_levels": None, "bits_per_dim": None}, None),  # continuous data: NLL in nats
    ({"log_likelihood_per_example": [-1.0, "x"]}, "log_likelihood_per_example is not a list of finite numbers"),
    ({"information_per_direction": {"a": 1}}, "information_per_direction is not a list of finite numbers"),
    ({"log_likelihood_per_example": [-499.9, -500.1]}, None),  # the NLL is their mean's negative
    (
        {"log_likelihood_per_example": [-495.0, -495.0]},
        "nll_nats is 500, but its values per example (log_likelihood_per_example) average 495",
    ),
    (
        {"elbo_nats": 7.0, "elbo_per_example": [7.0, 7.5]},
        "elbo_nats is 7, but its values per example (elbo_per_example) average 7.25",
    ),
    ({"ess_mean": 3.0, "ess_per_example": [2.0, 2.0]}, "ess_mean is 3, but its values per example"),
    ({"posterior_covariance_error": 0.3, "posterior_covariance_error_per_example": [0.2]}, "posterior_covariance_e"),
    ({"elbo_nats": 1e-7, "elbo_per_example": [0.0, 0.0]}, None),  # a metric near 0: its list's 5 decimals agree
]


@pytest.mark.parametrize("changes, refusal", DAMAGED_VALUES, ids=[str(changes) for changes, _ in DAMAGED_VALUES])
def test_an_eval_json_whose_values_five_never_writes_is_refused_not_tabled(tmp_path, changes, refusal):
    """A value edited into eval.json by hand (a word for a number, NaN, a negative count, bits/dim removed for
    discrete data) reached runs.csv, the tables and the claims, or switched the digits table to nats."""
    row = fake_run(tmp_path, "digits", "vae", 4, 0, 0, 5.0)
    path = Path(row["run_dir"]) / "eval.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))
    assert_tabled_or_refused(row, {}, refusal and f"eval.json is damaged: {refusal}")


@pytest.mark.parametrize(
    "evaluation, evaluated, refusal",
    [
        ({"model_selection": "best", "sigma_policy": "learned"}, {}, None),
        ({"sigma_policy": "fitted"}, {"sigma": "fitted"}, None),
        ({"model_selection": "last"}, {}, "evaluated with model_selection = 'last', but the config says 'best'"),
        ({"importance_samples": 16}, {}, "evaluated with importance_samples = 16, but the config says 8"),
        ({"split": "test"}, {}, None),
        ({"split": "train"}, {}, "evaluated on the 'train' split, but the tables report the 'test' split"),
        ({"split": "validation"}, {}, "evaluated on the 'validation' split, but the tables report the 'test'"),
        (
            {"sigma_policy": "fitted"},
            {},
            "evaluated with sigma = 'fitted', but the config says 'own': its evaluate job",
        ),
        (
            {"sigma_policy": "learned"},
            {"sigma": "fitted"},
            "evaluated with sigma = 'own', but the config says 'fitted'",
        ),
    ],
)
def test_a_run_is_tabled_only_from_an_evaluation_made_as_the_config_says(tmp_path, evaluation, evaluated, refusal):
    row = fake_run(tmp_path, "digits", "vae", 4, 0, 0, 5.0)
    path = Path(row["run_dir"]) / "eval.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | evaluation))
    assert_tabled_or_refused(row, evaluated, refusal)


def test_the_tables_count_informative_directions_by_todays_rule_whenever_evaluated(tmp_path):
    """An eval.json made before the threshold was raised for small test sets holds the old count; the runs table
    counts its per-direction values again (0.6 nats: informative at 0.5, not at 0.68 for d = 32, N = 360)."""
    row = fake_run(tmp_path, "digits", "vae", 32, 0, 0, 5.0)
    evaluation_path = Path(row["run_dir"]) / "eval.json"
    evaluation = json.loads(evaluation_path.read_text())
    per_direction = [0.9, 0.6] + [0.1] * 30
    evaluation |= {"informative_directions": 2, "information_per_direction": per_direction, "n_examples": 360}
    evaluation_path.write_text(json.dumps(evaluation))
    runs, _ = collect_runs(pd.DataFrame([row]), EVALUATED)
    assert runs["informative_directions"].tolist() == [1]


def test_in_key_order_sorts_every_mapping_also_inside_lists_and_keeps_the_lists_order():
    from five.sweep.table import in_key_order

    value = {"list": [{"margin": 0, "id": "C2"}, {"id": "C1"}], "confidence": 0.95}
    ordered = in_key_order(value)
    assert ordered == value and json.dumps(ordered) == (
        '{"confidence": 0.95, "list": [{"id": "C2", "margin": 0}, {"id": "C1"}]}'
    )


def test_the_budget_shown_is_table_probes_else_the_smallest_swept():
    from five.sweep.table import probes_shown

    models = {
        "vae": {},
        "fif": {"probes": [4, 1, 2]},
        "five": {"probes": [8, 2], "surrogate_points": ["mean", "sample"]},
    }
    assert probes_shown({"models": models}) == {"fif": 1, "five": 2, "five-sample": 2}
    assert probes_shown({"models": models, "table_probes": {"five": 8}}) == {"fif": 1, "five": 8, "five-sample": 8}
