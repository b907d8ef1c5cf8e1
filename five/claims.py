"""The paper's claims, evaluated from the runs table: a pure function runs.csv → verdict rows (issue 10).

Each claim is data in the workflow config (`claims:`): a rule kind, the two sides it compares, a metric and
its thresholds. Every cell (dataset × latent dim × comparison) gets the paired differences over seeds (same
seed, same data order), their mean, a Student-t confidence interval, how many seeds agree with the claim, and
a verdict: supported, contradicted or inconclusive (too few paired seeds, a diverged or missing run, or an
interval that straddles the threshold). A claim's overall verdict is `supported` when every cell is,
`contradicted` when any cell is, else `inconclusive`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
KINDS = ("paired", "equivalent", "ratio_at_most", "below_latent_dim", "grows_with_latent_dim")


@dataclass(frozen=True)
class Interval:
    """Mean and two-sided Student-t interval of paired differences."""

    n: int
    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, values: np.ndarray, confidence: float) -> "Interval":
        from scipy import stats

        n, mean = len(values), float(np.mean(values))
        if n < 2:
            return cls(n, mean, -math.inf, math.inf)
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n))
        return cls(n, mean, mean - half, mean + half)


def side(runs: pd.DataFrame, selector: dict, probes_shown: dict[str, int]) -> pd.DataFrame:
    """The runs of one side of a comparison: a model, at the selector's budget or the main table's."""
    model = selector["model"]
    rows = runs[runs["model"] == model]
    probes = selector.get("probes", probes_shown.get(model, 0))
    return rows[rows["probes"] == probes]


def describe(selector: dict, probes_shown: dict[str, int]) -> str:
    probes = selector.get("probes", probes_shown.get(selector["model"], 0))
    return f"{selector['model']} (K={probes})" if probes else selector["model"]


def cells(runs: pd.DataFrame, claim: dict) -> list[tuple[str, int]]:
    """(dataset, latent dim) pairs the claim looks at: its datasets (default all), all dims or the largest."""
    chosen = runs if not claim.get("datasets") else runs[runs["dataset"].isin(claim["datasets"])]
    pairs = []
    for dataset, group in chosen.groupby("dataset"):
        dims = sorted(group["latent_dim"].unique())
        pairs += [(dataset, int(d)) for d in (dims[-1:] if claim.get("latent_dims") == "largest" else dims)]
    return pairs


def paired_values(left: pd.DataFrame, right: pd.DataFrame | None, metric: str) -> tuple[pd.DataFrame, str | None]:
    """Seed-matched metric values of both sides (right None: one side); a reason when they cannot decide."""
    for rows in (left, right if right is not None else left):
        bad = rows[rows["status"] == "diverged"]
        if not bad.empty:
            return pd.DataFrame(), f"diverged run(s): {', '.join(bad['run_dir'].astype(str))}"
        missing = rows[rows[metric].isna()]
        if not missing.empty:
            return pd.DataFrame(), f"{metric} missing in {', '.join(missing['run_dir'].astype(str))}"
    values = left.set_index("seed")[[metric, "latent_dim"]].rename(columns={metric: "left"})
    if right is not None:
        values = values.join(right.set_index("seed")[[metric]].rename(columns={metric: "right"}), how="inner")
    return values, None


def decide(interval: Interval, low_threshold: float, high_threshold: float, claimed: str) -> str:
    """claimed 'below': supported if the interval lies below low_threshold, contradicted if above
    high_threshold; 'above': the mirror image; 'inside': supported if within [low, high], contradicted if
    wholly outside it. Anything else is inconclusive."""
    if claimed == "below":
        if interval.high < low_threshold:
            return SUPPORTED
        return CONTRADICTED if interval.low > high_threshold else INCONCLUSIVE
    if claimed == "above":
        if interval.low > high_threshold:
            return SUPPORTED
        return CONTRADICTED if interval.high < low_threshold else INCONCLUSIVE
    if low_threshold <= interval.low and interval.high <= high_threshold:
        return SUPPORTED
    return CONTRADICTED if interval.high < low_threshold or interval.low > high_threshold else INCONCLUSIVE


def agreeing(diffs: np.ndarray, low_threshold: float, high_threshold: float, claimed: str) -> int:
    """How many seeds on their own agree with the claim."""
    if claimed == "below":
        return int(np.sum(diffs < low_threshold))
    if claimed == "above":
        return int(np.sum(diffs > high_threshold))
    return int(np.sum((diffs >= low_threshold) & (diffs <= high_threshold)))


def verdict_row(diffs: np.ndarray, low: float, high: float, claimed: str, rule: str, settings: dict) -> dict:
    interval = Interval.of(diffs, settings["confidence"])
    return {"n_seeds": len(diffs), "mean": interval.mean, "ci_low": interval.low, "ci_high": interval.high,
            "seeds_agree": agreeing(diffs, low, high, claimed), "verdict": decide(interval, low, high, claimed),
            "rule": rule, "reason": ""}


def evaluate_cell(claim: dict, left: pd.DataFrame, right: pd.DataFrame | None, latent_dim: int,
                  settings: dict) -> dict:
    """One verdict row: the per-seed statistic of the claim's kind, its interval, and the rule that decided."""
    kind, metric, margin = claim["kind"], claim["metric"], claim.get("margin", 0.0)
    values, reason = paired_values(left, right, metric)
    if reason is None and len(values) < settings["min_seeds"]:
        reason = f"{len(values)} paired seed(s), fewer than min_seeds = {settings['min_seeds']}"
    if reason is not None:
        return {"n_seeds": len(values), "verdict": INCONCLUSIVE, "reason": reason}
    if kind == "paired":  # model better than against: model − against below −margin (or above +margin)
        diffs = (values["left"] - values["right"]).to_numpy(float)
        lower = claim.get("better", "lower") == "lower"
        rule = f"CI of model − against {'<' if lower else '>'} {'-' if lower else '+'}{margin}"
        return verdict_row(diffs, -margin, margin, "below" if lower else "above", rule, settings)
    if kind == "equivalent":
        diffs = (values["left"] - values["right"]).to_numpy(float)
        return verdict_row(diffs, -margin, margin, "inside", f"CI of model − against inside ±{margin}", settings)
    if kind == "ratio_at_most":  # on the log scale, where a ratio's interval is symmetric
        factor = math.log(claim["factor"])
        diffs = np.log(values["left"].to_numpy(float) / values["right"].to_numpy(float))
        return verdict_row(diffs, factor, factor, "below", f"CI of log(model / against) < log {claim['factor']}",
                           settings)
    if kind == "below_latent_dim":
        diffs = values["left"].to_numpy(float) - latent_dim
        row = verdict_row(diffs, -margin, 0.0, "below", f"CI of metric − d < -{margin}", settings)
        if np.all(diffs == 0):  # every seed keeps all d: no collapse at all
            row |= {"verdict": CONTRADICTED, "reason": "every seed keeps all d units"}
        return row
    raise ValueError(f"unknown claim kind {kind!r}")


def trend_cell(claim: dict, left: pd.DataFrame, right: pd.DataFrame, dims: list[int], settings: dict) -> dict:
    """grows_with_latent_dim: per seed, (model − against) at the largest d minus that at the smallest d is
    above +margin (`better: higher`) or below −margin (`better: lower`)."""
    metric, margin = claim["metric"], claim.get("margin", 0.0)
    per_dim = []
    for d in (dims[0], dims[-1]):
        values, reason = paired_values(left[left["latent_dim"] == d], right[right["latent_dim"] == d], metric)
        if reason is not None:
            return {"n_seeds": 0, "verdict": INCONCLUSIVE, "reason": reason}
        per_dim.append(values["left"] - values["right"])
    growth = (per_dim[1] - per_dim[0]).dropna().to_numpy(float)
    if len(growth) < settings["min_seeds"] or dims[0] == dims[-1]:
        return {"n_seeds": len(growth), "verdict": INCONCLUSIVE,
                "reason": f"{len(growth)} paired seed(s) over d = {dims[0]}…{dims[-1]} (min_seeds = "
                          f"{settings['min_seeds']}, two distinct d needed)"}
    higher = claim.get("better", "higher") == "higher"
    rule = (f"CI of (model − against at d={dims[-1]}) − (at d={dims[0]}) "
            f"{'>' if higher else '<'} {'+' if higher else '-'}{margin}")
    return verdict_row(growth, -margin, margin, "above" if higher else "below", rule, settings)


COMPARING_KINDS = ("paired", "equivalent", "ratio_at_most", "grows_with_latent_dim")  # need `against`


def claim_rows(runs: pd.DataFrame, claim: dict, settings: dict, probes_shown: dict[str, int]) -> list[dict]:
    """The cells of one claim: each `against` side × data set × latent dim (or the d range of a trend)."""
    left_selector = {"model": claim["model"], **({"probes": claim["probes"]} if "probes" in claim else {})}
    right_selectors = [{"model": other} if isinstance(other, str) else other for other in claim.get("against", [])]
    rows = []
    for right_selector in right_selectors or [None]:
        left = side(runs, left_selector, probes_shown)
        right = side(runs, right_selector, probes_shown) if right_selector else None
        base = {"claim": claim["id"], "statement": claim["statement"], "metric": claim["metric"],
                "model": describe(left_selector, probes_shown),
                "against": describe(right_selector, probes_shown) if right_selector else ""}
        if claim["kind"] == "grows_with_latent_dim":
            for dataset in sorted({dataset for dataset, _ in cells(runs, claim)}):
                dims = sorted(runs.loc[runs["dataset"] == dataset, "latent_dim"].unique().tolist())
                verdict = trend_cell(claim, left[left["dataset"] == dataset], right[right["dataset"] == dataset],
                                     dims, settings)
                rows.append(base | {"dataset": dataset, "latent_dim": f"{dims[0]}→{dims[-1]}"} | verdict)
            continue
        for dataset, latent_dim in cells(runs, claim):
            def at(frame):
                return frame[(frame["dataset"] == dataset) & (frame["latent_dim"] == latent_dim)]

            verdict = evaluate_cell(claim, at(left), None if right is None else at(right), latent_dim, settings)
            rows.append(base | {"dataset": dataset, "latent_dim": latent_dim} | verdict)
    return rows


def overall_rows(table: pd.DataFrame) -> list[dict]:
    """One row per claim: supported if every cell is, contradicted if any cell is, else inconclusive."""
    rows = []
    for claim_id, group in table.groupby("claim", sort=False):
        counts = group["verdict"].value_counts()
        verdict = (CONTRADICTED if counts.get(CONTRADICTED, 0) else
                   SUPPORTED if counts.get(SUPPORTED, 0) == len(group) else INCONCLUSIVE)
        summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in (SUPPORTED, CONTRADICTED, INCONCLUSIVE))
        rows.append({"claim": claim_id, "statement": group["statement"].iloc[0], "dataset": "all",
                     "latent_dim": "all", "verdict": verdict, "reason": f"cells: {summary}",
                     "rule": "supported if every cell is; contradicted if any cell is; else inconclusive"})
    return rows


def evaluate_claims(runs: pd.DataFrame, settings: dict, probes_shown: dict[str, int]) -> pd.DataFrame:
    """Verdict rows for every claim of `settings['list']` (cells) after one `overall` row per claim."""
    table = pd.DataFrame([row for claim in settings["list"] for row in claim_rows(runs, claim, settings, probes_shown)])
    if table.empty:
        return table
    return pd.concat([pd.DataFrame(overall_rows(table)), table], ignore_index=True)


def write_claims(table: pd.DataFrame, out_prefix, settings: dict, provenance: dict | None = None) -> str:
    """claims.csv (every row) and claims.md (overall verdicts, then every cell); returns the short summary.
    `provenance` ({experiment, config_hash}) is stated in both, so that no file passes for another config's."""
    from pathlib import Path

    provenance = provenance or {}
    made_from = ", ".join(f"{key} {value}" for key, value in provenance.items())
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    table.assign(**provenance).to_csv(out_prefix.with_suffix(".csv"), index=False)
    if table.empty:
        summary = "No claims evaluated (no runs or no claims configured)."
        out_prefix.with_suffix(".md").write_text(f"# Claims\n\nMade from: {made_from}.\n\n{summary}\n")
        return summary
    overall = table[table["dataset"] == "all"]
    detail = table[table["dataset"] != "all"].copy()
    for column in ("mean", "ci_low", "ci_high"):
        detail[column] = detail[column].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    detail["seeds agree"] = [f"{a}/{n}" if n else "" for a, n in zip(detail["seeds_agree"].fillna(0).astype(int),
                                                                    detail["n_seeds"].fillna(0).astype(int))]
    level = int(round(100 * settings["confidence"]))
    lines = ["# Do the paper's claims hold?", "", f"Made from: {made_from}.", "",
             f"Paired over seeds (same seed, same data order); mean paired difference with a two-sided "
             f"{level}% Student-t interval; at least {settings['min_seeds']} paired seeds per cell, else "
             "inconclusive. A claim is supported if every cell is, contradicted if any cell is.", "",
             overall[["claim", "statement", "verdict", "reason"]].rename(columns={"reason": "cells"})
             .to_markdown(index=False), "", "## Every cell", "",
             detail[["claim", "dataset", "latent_dim", "model", "against", "metric", "n_seeds", "mean", "ci_low",
                     "ci_high", "seeds agree", "verdict", "rule", "reason"]].to_markdown(index=False), ""]
    out_prefix.with_suffix(".md").write_text("\n".join(lines))
    return "\n".join(f"{row.claim} {row.verdict.upper():<13} {row.statement} ({row.reason})"
                     for row in overall.itertuples())
