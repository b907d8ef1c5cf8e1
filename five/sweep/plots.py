"""Posterior-collapse and ablation figures (spec §3), with seaborn. Pure functions of the runs DataFrame."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on compute nodes

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from five.base.config import NO_PROBES  # noqa: E402
from five.sweep.aggregate import headline_metric, row_label, with_results  # noqa: E402


def _at_shown_budget(frame: pd.DataFrame, probes_shown: dict[str, int]) -> pd.DataFrame:
    """The rows of the models without a budget, and of fif/five at the budget the main table shows."""
    return frame[(frame["probes"] == NO_PROBES) | (frame["probes"] == frame["model"].map(probes_shown))]


def _labelled(runs: pd.DataFrame, probes_shown: dict[str, int]) -> pd.DataFrame:
    shown = _at_shown_budget(runs, probes_shown).copy()
    shown["label"] = [row_label(m, k) for m, k in zip(shown["model"], shown["probes"])]
    shown["metric"] = [row[headline_metric(runs, row["dataset"])] for _, row in shown.iterrows()]
    return with_results(shown)


NO_RESULTS = "no runs with results to plot (none, or all diverged)"


def _placeholder(path: Path, message: str) -> Path:
    """A figure that says why there is nothing to plot (e.g. a sweep without fif/five, or all runs diverged)."""
    figure, axis = plt.subplots(figsize=(5, 1.5))
    axis.axis("off")
    axis.text(0.5, 0.5, message, ha="center", va="center")
    return _save(figure, path)


BAND = "band: ± 1 std over seeds"


def _band_legend(grid, runs: pd.DataFrame) -> None:
    """The legend beside the top panels, titled with the band and how many diverged runs of `runs` the lines
    leave out (the tables count them)."""
    diverged = int((runs["status"] == "diverged").sum())
    title = BAND + (f"\n{diverged} diverged run(s) left out: see the tables" if diverged else "")
    sns.move_legend(grid, "upper left", bbox_to_anchor=(1.0, 0.95), title=title, frameon=False)


COLLAPSE_COUNTS = {
    "active_units_eigen": "active units\n(Burda, eigenvalue count)",
    "informative_directions": "informative directions\n(> 0.5 nats; more for small N)",
}


def _seed_band_lines(data: pd.DataFrame, **encoding):
    """Seaborn lines of the mean over seeds with a ±1 std band (BAND), marked points, a panel per dataset;
    `encoding`: x, y, hue and any further relplot arguments."""
    return sns.relplot(data=data, col="dataset", kind="line", marker="o", errorbar="sd", height=3.2, **encoding)


def _plain_log_axis(grid, values) -> None:
    """A log x axis with a tick at each swept value (d or K), labelled plainly (not 2×10⁰, 3×10⁰, …)."""
    grid.set(xscale="log")
    for axis in grid.axes.flat:
        axis.set_xticks(values, [f"{value:g}" for value in values])
        axis.minorticks_off()


def likelihood_vs_latent_dim(runs: pd.DataFrame, probes_shown: dict[str, int], path: Path) -> Path:
    """Test bits/dim (nats for continuous data) against d: one line per model, a panel per dataset."""
    data = _labelled(runs, probes_shown)
    if data.empty:
        return _placeholder(path, NO_RESULTS)
    grid = _seed_band_lines(data, x="latent_dim", y="metric", hue="label", facet_kws={"sharey": False})
    _plain_log_axis(grid, sorted(data["latent_dim"].unique()))
    grid.set_axis_labels("latent dimension d", "test bits/dim (nats if continuous)")
    _band_legend(grid, _at_shown_budget(runs, probes_shown))
    return _save(grid.figure, path)


def active_units_vs_latent_dim(runs: pd.DataFrame, probes_shown: dict[str, int], path: Path) -> Path:
    """Collapse against d by both counts (§3), a row each: Burda's active units (rotation-invariant) and the
    informative directions, with the y = d diagonal of no collapse."""
    data = _labelled(runs, probes_shown)
    if data.empty:
        return _placeholder(path, NO_RESULTS)
    counts = [column for column in COLLAPSE_COUNTS if column in data and data[column].notna().any()]
    long = data.melt(
        id_vars=["dataset", "latent_dim", "label"], value_vars=counts, var_name="count", value_name="directions"
    )
    long["count"] = long["count"].map(COLLAPSE_COUNTS)
    grid = _seed_band_lines(long, x="latent_dim", y="directions", hue="label", row="count")
    for (_, dataset), axis in grid.axes_dict.items():  # no collapse: y = d over the d this data set sweeps
        dims = sorted(data.loc[data["dataset"] == dataset, "latent_dim"].unique())
        axis.plot(dims, dims, "k--", linewidth=1, label="y = d")
    _plain_log_axis(grid, sorted(data["latent_dim"].unique()))
    grid.set_titles("{row_name}\n{col_name}")
    grid.set_axis_labels("latent dimension d", "directions")
    _band_legend(grid, _at_shown_budget(runs, probes_shown))
    grid.figure.subplots_adjust(hspace=0.5)  # room for the lower row's three-line titles
    return _save(grid.figure, path)


def budget_ablation(runs: pd.DataFrame, path: Path) -> Path:
    """Test metric against the Hutchinson budget K for fif and five, one panel per dataset."""
    data = with_results(runs[runs["probes"] != NO_PROBES]).copy()
    if data.empty:
        return _placeholder(path, "no fif/five runs with results (all diverged or none): no budget ablation")
    data["metric"] = [row[headline_metric(runs, row["dataset"])] for _, row in data.iterrows()]
    data["d"] = data["latent_dim"].astype(str)
    grid = _seed_band_lines(data, x="probes", y="metric", hue="model", style="d", facet_kws={"sharey": False})
    _plain_log_axis(grid, sorted(data["probes"].unique()))
    _band_legend(grid, runs[runs["probes"] != NO_PROBES])
    grid.set_axis_labels("Hutchinson budget K", "test bits/dim (nats if continuous)")
    return _save(grid.figure, path)


def training_curves(histories: pd.DataFrame, probes_shown: dict[str, int], path: Path) -> Path:
    """Validation NLL (short IWAE on a fixed validation subset) per epoch and model, mean over seeds, a panel
    per dataset and latent dim. Not the training loss: FIF/FIVE losses hold a surrogate whose value is
    meaningless (spec §1.3)."""
    if "val_nll" not in histories:
        return _placeholder(path, "no validation history to plot")
    data = _at_shown_budget(histories, probes_shown).dropna(subset=["val_nll"])
    if data.empty:
        return _placeholder(path, "no validation history to plot")
    data = data.assign(
        label=[row_label(m, k) for m, k in zip(data["model"], data["probes"])],
        panel=[f"{dataset}, d = {d}" for dataset, d in zip(data["dataset"], data["latent_dim"])],
    )
    panels = data.sort_values(["dataset", "latent_dim"])["panel"].unique()  # only the d each data set sweeps
    grid = sns.relplot(
        data=data,
        x="epoch",
        y="val_nll",
        hue="label",
        col="panel",
        col_order=panels,
        col_wrap=min(len(panels), data.groupby("dataset")["latent_dim"].nunique().max()),
        kind="line",
        marker="o",
        errorbar=None,
        facet_kws={"sharey": False},
        height=2.6,
        aspect=1.3,
    )
    grid.set_titles("{col_name}")  # short titles: long ones ran into each other
    grid.set_axis_labels("epoch", "validation NLL (nats)")
    sns.move_legend(grid, "upper left", bbox_to_anchor=(1.0, 0.95), title="mean over the seeds still training")
    return _save(grid.figure, path)


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path
