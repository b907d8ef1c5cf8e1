"""Runs → one table of results → paper-style tables. Pure functions of DataFrames (and the run JSON files).

Diverged runs stay in every table, marked as such; they are never silently dropped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
from pandas.api.types import is_numeric_dtype

from five.base.config import MODELS_WITH_FIXED_SIGMA, NO_PROBES, SCHEDULE_SETTINGS, TrainConfig, model_dir
from five.base.errors import FiveError
from five.base.files import check_evaluated_after_training, read_train_record
from five.base.metrics import RESULT_COLUMNS, TABLED_SPLIT, informative_count, read_evaluation
from five.sweep.estimate_files import REMAKE_ADVICE
from five.sweep.table import device_kind, evaluation_settings

KEYS = ["dataset", "model", "latent_dim", "probes", "seed"]


def collect_runs(sweep: pd.DataFrame, evaluation_config: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, histories): one row per sweep row with its status and metrics, and per-epoch training history.
    `evaluation_config`: the workflow config, or its estimate_config; its EVALUATION_CONFIG keys are what every
    evaluation must have used."""
    rows, histories = [], []
    for point in sweep.to_dict("records"):
        run_dir = Path(point["run_dir"])
        train = read_train_record(run_dir / "train.json")
        evaluation = read_evaluation(run_dir / "eval.json")
        check_evaluated_after_training(run_dir, train, evaluation)
        check_made_as_configured(run_dir, point, train, evaluation, evaluation_config)
        # FIVE's estimator variant is its own row (`five-sample`), the default keeps the name `five`
        point = point | {"model": model_dir(point["model"], point.get("surrogate_point"))}
        row = {key: point[key] for key in KEYS} | {
            "surrogate_point": point.get("surrogate_point"),
            "run_dir": str(run_dir),
        }
        row["status"] = (
            "diverged"
            if "diverged" in (train.get("status"), evaluation.get("status"))
            else ("stalled" if train.get("status") == "stalled" else "complete")
        )
        row["error"] = train.get("error") or evaluation.get("error")
        row |= {column: evaluation.get(column) for column in RESULT_COLUMNS}
        per_direction, examples = evaluation.get("information_per_direction"), evaluation.get("n_examples")
        if per_direction and examples:  # counted by today's rule, whenever the evaluation was made
            row["informative_directions"] = informative_count(per_direction, examples)
        epoch_times = [entry["time_s"] for entry in train.get("history", []) if entry.get("time_s") is not None]
        row |= {
            "epochs_completed": train.get("epochs_completed"),
            "train_wall_time_s": train.get("wall_time_s"),
            "encoder_product": train.get("encoder_product"),
            "pack_size": train.get("pack_size", 1),
            "epoch_time_s": float(pd.Series(epoch_times).median()) if epoch_times else None,
            "device": train.get("device"),
            "slurm_job_id": train.get("slurm_job_id"),
            "cuda_visible_devices": train.get("cuda_visible_devices"),
        }
        row |= {key: value for key, value in train["config"].items() if key not in row}  # its settings (lr, …)
        rows.append(row)
        histories += [{key: point[key] for key in KEYS} | entry for entry in train.get("history", [])]
    return pd.DataFrame(rows), pd.DataFrame(histories)


def check_made_as_configured(run_dir: Path, point: dict, train: dict, evaluation: dict, evaluation_config: dict):
    """A run is tabled only where it was trained with its sweep row's settings and evaluated as the config says:
    a job that Snakemake did not rerun after an edit (its records lost, e.g. results copied or .snakemake/
    removed) would otherwise put another config's numbers under this one's name. Stops the aggregation, naming
    the run and the first setting that differs."""
    configured = TrainConfig.from_dict({**json.loads(point["training_json"]), "seed": point["seed"]}).to_dict()
    for what, stored, ignore, job in (
        ("trained", train.get("config") or {}, (), "train"),
        # best.pt may predate a schedule edit that kept its run (five.run.train._replay)
        ("evaluated a checkpoint trained", evaluation.get("config") or {}, SCHEDULE_SETTINGS, "evaluate"),
    ):
        stored = TrainConfig.resolved(stored)
        differing = [key for key in configured if key not in ignore and stored.get(key, "(none)") != configured[key]]
        if differing:
            key = differing[0]
            raise FiveError(
                f"{run_dir}: {what} with {key} = {stored.get(key, '(none)')!r}, but the config says "
                f"{configured[key]!r}: {RERUN_ADVICE.format(job=job)}"
            )
    if evaluation.get("split", TABLED_SPLIT) != TABLED_SPLIT:  # a diverged run's eval.json may have none
        raise FiveError(
            f"{run_dir}: evaluated on the {evaluation['split']!r} split, but the tables report the "
            f"{TABLED_SPLIT!r} split: {RERUN_ADVICE.format(job='evaluate')}"
        )
    found = {key: evaluation.get(key) for key in ("model_selection", "importance_samples")}
    found["sigma"] = {None: None, "fitted": "fitted"}.get(evaluation.get("sigma_policy"), "own")
    for key, value in evaluation_settings(point, evaluation_config).items():
        if found[key] is not None and found[key] != value:  # a diverged run's eval.json has no model_selection
            raise FiveError(
                f"{run_dir}: evaluated with {key} = {found[key]!r}, but the config says {value!r}: "
                f"{RERUN_ADVICE.format(job='evaluate')}"
            )


RERUN_ADVICE = (
    "its {job} job did not rerun after the edit (Snakemake's records of it lost?); rerun it: --forcerun {job}"
)


def with_predicted_times(runs: pd.DataFrame, estimate_csv: Path, keys: dict[str, str]) -> pd.DataFrame:
    """Runs with the estimate's predicted training time beside the measured one (`five estimate`), when an
    estimate exists: train_time_ratio = actual / predicted shows how far to trust it on this hardware. `keys`:
    each run's estimate_key; a prediction made for other settings (before an edit) or on another kind of device
    than the run's is left out, and flagged `estimate_outdated`; so is one of a packed run whose estimate timed no
    pack of its size (flagged `estimate_unpacked`)."""
    if not Path(estimate_csv).is_file():
        return runs
    estimate = read_estimate_table(estimate_csv)
    trained_on = dict(zip(runs["run_dir"], runs["device"].map(device_kind)))
    current = (estimate["run_dir"].map(keys) == estimate.reindex(columns=["estimate_key"])["estimate_key"]) & (
        estimate.reindex(columns=["device"])["device"].map(device_kind) == estimate["run_dir"].map(trained_on)
    )
    columns = ["run_dir", "predicted_train_s", "predicted_evaluate_s", "predicted_train_s_packed", "packed_members"]
    runs = runs.merge(estimate[current].reindex(columns=columns), on="run_dir", how="left")
    runs["estimate_outdated"] = runs["run_dir"].isin(estimate.loc[~current, "run_dir"])
    # a packed run's wall time is its pack's: M members' packed shares, where the estimate timed a pack of M;
    # else the estimate predicts no such pack
    pack = runs["pack_size"].fillna(1)
    packed = (runs["predicted_train_s_packed"] * pack).where(runs["packed_members"] == pack)
    runs["estimate_unpacked"] = (pack > 1) & runs["predicted_train_s"].notna() & packed.isna()
    runs["predicted_train_s"] = runs["predicted_train_s"].where(pack == 1, packed)
    runs["train_time_ratio"] = runs["train_wall_time_s"] / runs["predicted_train_s"]
    return runs.drop(columns=["predicted_train_s_packed", "packed_members"])


ESTIMATE_TIMES = ("predicted_train_s", "predicted_evaluate_s")


def read_estimate_table(path) -> pd.DataFrame:
    """estimate.csv as a table, refused in one line where it is damaged (no run_dir, times that are no numbers)."""
    try:
        estimate = pd.read_csv(path, dtype={"estimate_key": str})  # a hex key may look like a number
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise FiveError(f"{path} is damaged ({' '.join(str(error).split())}); {REMAKE_ADVICE}") from None
    missing = [column for column in ("run_dir", *ESTIMATE_TIMES) if column not in estimate]
    wrong = [
        column
        for column in (*ESTIMATE_TIMES, "predicted_train_s_packed", "packed_members")
        if column in estimate
        and not (
            is_numeric_dtype(estimate[column])
            and estimate[column].dropna().between(0, math.inf, inclusive="left").all()
        )
    ]
    if missing or wrong:
        what = f"it lacks {', '.join(missing)}" if missing else f"its {', '.join(wrong)} holds values that are no times"
        raise FiveError(f"{path} is damaged: {what}; {REMAKE_ADVICE}")
    return estimate


UNPREDICTED_FLAGS = ("estimate_outdated", "estimate_unpacked")  # with_predicted_times: why a run has no prediction


# the aggregation does not wait for an estimate (estimate.csv is no input of it): one made later is read when asked
AFTER_ESTIMATE = " (made after the sweep, it is read by `snakemake --cores all --forcerun aggregate --configfile …`)"
PACKED_TIMES = " (a run trained in a pack has its pack's times, actual and predicted: a pack of M counts M times)"


def timing_report(runs: pd.DataFrame) -> str:
    """Markdown: predicted vs actual training time per run, and the share within a factor of 2."""
    outdated, unpacked = (int(runs[flag].sum()) if flag in runs else 0 for flag in UNPREDICTED_FLAGS)
    note = (
        f"{outdated} runs' estimates were made for other settings (before an edit) or on another kind of device "
        f"and are left out: `snakemake estimate --configfile …` again, where the jobs run, predicts them{AFTER_ESTIMATE}.\n\n"
        if outdated
        else ""
    ) + (
        f"{unpacked} runs trained in packs of a size their estimates timed no pack of are left out: "
        "`snakemake estimate` with this config's `pack_seeds` and seeds (`five estimate --pack-seeds`) times them.\n\n"
        if unpacked
        else ""
    )
    if "predicted_train_s" not in runs or runs["predicted_train_s"].isna().all():
        advice = (
            "No run has a prediction.\n"
            if note
            else "No estimate for these runs: `snakemake estimate --configfile …` puts its predictions here"
            f"{AFTER_ESTIMATE}.\n"
        )
        return "# Predicted vs actual time\n\n" + note + advice
    part = runs[runs["predicted_train_s"].notna() & runs["train_wall_time_s"].notna()]
    ratio = part["train_time_ratio"]
    within = float(((ratio >= 0.5) & (ratio <= 2)).mean()) if len(part) else float("nan")
    columns = [
        "dataset",
        "model",
        "latent_dim",
        "probes",
        "seed",
        "predicted_train_s",
        "train_wall_time_s",
        "train_time_ratio",
    ]
    return (
        f"# Predicted vs actual time\n\n{note}Training time (the training loop, without job start-up) against "
        f"`five estimate`'s prediction: actual/predicted median {ratio.median():.2f} "
        f"(range {ratio.min():.2f}–{ratio.max():.2f}); {100 * within:.0f}% of {len(part)} runs within a "
        f"factor of 2{PACKED_TIMES if 'pack_size' in part and (part['pack_size'] > 1).any() else ''}.\n\n"
        + part[columns].to_markdown(index=False, floatfmt=".2f")
        + "\n"
    )


def headline_metric(runs: pd.DataFrame, dataset: str) -> str:
    """bits/dim for discrete data, nats for continuous data (where bits/dim is undefined)."""
    values = runs.loc[runs["dataset"] == dataset, "bits_per_dim"]
    return "bits_per_dim" if values.notna().any() else "nll_nats"


def row_label(model: str, probes: int, sigma_policy: str | None = None) -> str:
    """e.g. `five (K=1, σ fitted)`: the budget where the model has one, and which σ the number uses."""
    parts = ([f"K={probes}"] if probes != NO_PROBES else []) + ([f"σ {sigma_policy}"] if sigma_policy else [])
    return f"{model} ({', '.join(parts)})" if parts else model


def with_results(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose numbers the tables, their captions and the plots count: complete ones and those stopped
    early by patience (stalled: a result, which the tables mark), not diverged ones (which the tables count as
    such, and which make a claim's cell untestable)."""
    return runs[runs["status"] != "diverged"]


def with_own_sigma_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs plus, for every run that also reports its NLL at its own fixed σ (FIF evaluated with a fitted σ),
    a row carrying that number with sigma_policy `fixed`: FIF as its paper defines the model, beside the fair
    density comparison. A diverged run of such a model has no number for either row and counts in both."""
    if "nll_nats_own_sigma" not in runs:
        return runs
    fixed_at_fitted = runs["model"].isin(MODELS_WITH_FIXED_SIGMA) & (runs["sigma_policy"] == "fitted")
    own = runs[fixed_at_fitted & (runs["nll_nats_own_sigma"].notna() | (runs["status"] == "diverged"))].copy()
    own["nll_nats"], own["bits_per_dim"] = own["nll_nats_own_sigma"], own["bits_per_dim_own_sigma"]
    own["sigma_policy"], own["sigma"] = "fixed", own["sigma_own"]
    return pd.concat([runs, own], ignore_index=True)


SIGMA_POLICY_MEANING = {
    "fitted": (
        "fitted = the σ maximising the IWAE of validation data (the first training examples where a data set has "
        "no validation split) for the trained f, g (the same rule for every model)"
    ),
    "learned": "learned = the trained ρ = log σ",
    "fixed": "fixed = FIF's s = 1/(2β), as the FIF paper defines the model",
}


def main_caption(runs: pd.DataFrame, probes_shown: dict[str, int], selection: str) -> str:
    """What the main table shows: the best per column, the budget of each model with one that it tables (of those
    with runs: `five` is absent where only its `sample` variant runs), which checkpoint was evaluated."""
    tabled = set(runs["model"])
    shown = "; ".join(f"{model} at K={k}" for model, k in probes_shown.items() if model in tabled)
    parts = ("Best per column in bold", shown, selection)
    return "; ".join(part for part in parts if part) + "; diverged runs are marked, not dropped."


def evaluation_caption(runs: pd.DataFrame) -> str:
    """What stands behind a table's numbers: N per data set, each model's proposal, the σ policies of its rows
    (`runs`: those the table summarises, with FIF's fixed-σ rows where it has them: with_own_sigma_rows)."""
    counted = with_results(runs)
    if counted.empty or "proposal" not in counted:
        return "No completed evaluation."
    samples = counted.groupby("dataset")["importance_samples"].first()
    parts = [", ".join(f"N = {int(n)} importance samples ({dataset})" for dataset, n in samples.items())]
    proposals = counted.groupby("model")["proposal"].agg(lambda texts: " / ".join(sorted(set(texts))))
    parts.append("proposals: " + "; ".join(f"{model}: {text}" for model, text in proposals.items()))
    policies = sorted(set(counted["sigma_policy"].dropna()))
    parts.append("σ: " + "; ".join(SIGMA_POLICY_MEANING[p] for p in policies if p in SIGMA_POLICY_MEANING))
    return ". ".join(parts) + "."


def summarise(runs: pd.DataFrame, probes_shown: dict[str, int] | None = None) -> pd.DataFrame:
    """Long table: dataset, row label, latent dim → mean, std over the seeds with a result, counts, best flag.

    `probes_shown` picks one budget per probe model for the main table (None: every budget, the ablation).
    Rows are also split by the σ the numbers use (`sigma_policy`), which the row label names.
    """
    rows = []
    runs = runs.assign(sigma_policy=runs["sigma_policy"].fillna("") if "sigma_policy" in runs else "")
    keys = ["dataset", "model", "probes", "latent_dim", "sigma_policy"]
    for (dataset, model, probes, latent_dim, sigma_policy), group in runs.groupby(keys):
        if probes_shown is not None and probes != NO_PROBES and probes_shown.get(model) != probes:
            continue
        metric = headline_metric(runs, dataset)
        counted = with_results(group)[metric].astype(float)
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "probes": probes,
                "sigma_policy": sigma_policy,
                "row": row_label(model, probes, sigma_policy),
                "latent_dim": latent_dim,
                "metric": metric,
                "mean": counted.mean(),
                "std": counted.std(ddof=1) if len(counted) > 1 else float("nan"),
                "seeds": len(group),
                "diverged": int((group["status"] == "diverged").sum()),
                "stalled": int((group["status"] == "stalled").sum()),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    best = table.groupby(["dataset", "latent_dim"])["mean"].transform("min")
    table["best"] = table["mean"].notna() & (table["mean"] == best)
    return table


def attach_references(table: pd.DataFrame, references: dict[str, list[dict]]) -> pd.DataFrame:
    """Add the config's reference numbers (per dataset: model, latent_dim, value[, probes]) as a column; an entry
    with `probes` wins over one without for its budget, in whichever order they come."""
    table = table.copy()
    table["reference"] = float("nan")
    for dataset, entries in (references or {}).items():
        for entry in sorted(entries, key=lambda entry: "probes" in entry):  # those for every K first
            match = (
                (table["dataset"] == dataset)
                & (table["model"] == entry["model"])
                & (table["latent_dim"] == entry["latent_dim"])
            )
            if "probes" in entry:
                match &= table["probes"] == entry["probes"]
            table.loc[match, "reference"] = entry["value"]
    return table


def format_cell(entry: pd.Series, bold: tuple[str, str]) -> str:
    if entry["diverged"] == entry["seeds"]:
        return "diverged"
    text = f"{entry['mean']:.3f}" if math.isnan(entry["std"]) else f"{entry['mean']:.3f} ± {entry['std']:.3f}"
    if entry["best"]:
        text = f"{bold[0]}{text}{bold[1]}"
    if entry["diverged"]:
        text += f" ({entry['diverged']}/{entry['seeds']} diverged)"
    if entry.get("stalled", 0):
        text += f" ({entry['stalled']}/{entry['seeds']} stopped early: validation NLL stalled)"
    if not math.isnan(entry.get("reference", float("nan"))):
        text += f" [ref {entry['reference']:.3f}]"
    return text


def wide_table(table: pd.DataFrame, dataset: str, bold: tuple[str, str]) -> pd.DataFrame:
    """Rows models, columns latent dims, cells 'mean ± std' with the best of each column in bold (blank where a
    model has no run at that d)."""
    part = table[table["dataset"] == dataset].copy()
    part["cell"] = part.apply(format_cell, axis=1, bold=bold)
    order = part.sort_values(
        ["model", "probes", "sigma_policy"], key=lambda c: c.map(MODEL_ORDER) if c.name == "model" else c
    )
    wide = part.pivot(index="row", columns="latent_dim", values="cell").reindex(order["row"].unique()).fillna("")
    wide.columns = [f"d = {d}" for d in wide.columns]
    wide.index.name = "model"
    return wide


MODEL_ORDER = {"vae": 0, "fcvae": 1, "fif": 2, "five": 3, "five-sample": 4}


LATEX_SPECIALS = {character: "\\" + character for character in "&%$#_{}"} | {
    "\\": r"\textbackslash{}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "|": r"\textbar{}",  # q(z|x): pdflatex's text font sets a bare | as a dash
}
LATEX_SYMBOLS = {  # the symbols five's captions and labels use, in LaTeX's own spelling (pdflatex reads ASCII)
    "±": r"$\pm$",
    "σ": r"$\sigma$",
    "β": r"$\beta$",
    "ρ": r"$\rho$",
    "·": r"$\cdot$",
    "ᵀ": r"$^{\top}$",
    "√": r"$\surd$",
    "≤": r"$\le$",
    "≥": r"$\ge$",
    "×": r"$\times$",
    "→": r"$\to$",
    "₂": r"$_2$",
    "−": "-",
    "–": "--",
    "—": "---",
    "…": r"\dots{}",
}
BOLD_MARKERS = ("\x02", "\x03")  # where a cell's bold begins and ends, until it is escaped for LaTeX


def latex_text(text: str) -> str:
    """`text` as LaTeX prose: its special characters escaped, five's symbols spelled as LaTeX spells them (a
    character of the user's own, say in a file name, stays as it is: UTF-8 for xelatex or lualatex)."""
    return "".join(LATEX_SPECIALS.get(character, LATEX_SYMBOLS.get(character, character)) for character in text)


def latex_cell(cell: str) -> str:
    """A table cell for LaTeX: its text escaped, its bold part (BOLD_MARKERS) in \\textbf."""
    return latex_text(cell).replace(BOLD_MARKERS[0], r"\textbf{").replace(BOLD_MARKERS[1], "}")


def write_tables(table: pd.DataFrame, out_prefix: Path, title: str, caption: str) -> list[Path]:
    """`<prefix>.csv` (long, numeric), `.md` and `.tex` (one table per dataset)."""
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_prefix.with_suffix(".csv"), out_prefix.with_suffix(".md"), out_prefix.with_suffix(".tex")]
    table.to_csv(paths[0], index=False)
    markdown, latex = [f"# {title}\n", caption + "\n"], []
    for dataset in sorted(table["dataset"].unique()) if not table.empty else []:
        metric = table.loc[table["dataset"] == dataset, "metric"].iloc[0]
        unit = "bits/dim" if metric == "bits_per_dim" else "nats"
        markdown += [
            f"\n## {dataset} (test {unit}, mean ± std over seeds; lower is better)\n",
            wide_table(table, dataset, ("**", "**")).to_markdown(),
            "",
        ]
        tex = wide_table(table, dataset, BOLD_MARKERS).map(latex_cell)
        tex = tex.rename(index=latex_text, columns=lambda c: c.replace("d = ", "$d={") + "}$")
        caption_tex = latex_text(f"{title}: {dataset} (test {unit}). {caption}")
        latex.append(tex.style.to_latex(caption=caption_tex, hrules=True, position_float="centering"))
    paths[1].write_text("\n".join(markdown) + "\n")
    paths[2].write_text("\n".join(latex))
    return paths
