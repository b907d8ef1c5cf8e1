"""The paper's claims, evaluated from the runs table: a pure function runs.csv → verdict rows (issue 10, 19).

Each claim is data in the workflow config (`claims:`): a rule kind, the two sides it compares, a metric and
its thresholds. Every cell (dataset × latent dim × comparison) gets the paired differences over seeds (same
seed, same data order), their mean, an interval, how many seeds agree with the claim, and two one-sided
p-values at the claim's boundary: that the claim holds there, and that it is false. The test is Student's t
for a continuous metric, and the sign-flip (permutation) test where the metric is a count or the
differences tie: exact up to 16 seeds (with n seeds its smallest p-value is 2⁻ⁿ: three seeds can never decide a
count at 95%), over 2¹⁶ drawn sign patterns beyond (smallest p-value 1/(2¹⁶ + 1)). A difference within float64 rounding of the boundary lies on
it. The interval is Student-t, its spread for counts at least their rounding (1/√12 per count), so that identical
differences never make an interval of width 0. Every seed is evaluated on one test set, so a metric that is a
mean over test examples (PER_EXAMPLE_LISTS) adds the test set's draw to its standard error; a cell whose runs
lack their per-example values is inconclusive and says so.

Per claim, the p-values of its cells are Holm-adjusted (separately for support and contradiction), and a cell
decides at α = (1 − confidence) / 2, one-sided. A claim is `supported` when every cell is, `contradicted` when
any cell is, else `inconclusive`: where the claim sits exactly at its boundary in every cell, it is declared
contradicted, and supported, each with probability at most α, however many cells it has (tests/test_claims.py
checks this by simulation). That rate assumes per-seed differences about normal (t) or symmetric about the
boundary (sign-flip): strongly skewed ones are decided wrongly more often (config/README.md#claims gives the
measured rates). A count below d (`below_latent_dim`) is skewed by construction wherever its boundary lies
inside 0…d (a rare collapse), so it takes Hoeffding's test for the mean of a bounded value, whose rate holds for
any distribution.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from five.base.config import NO_PROBES
from five.base.metrics import COUNT_METRICS, PER_EXAMPLE_LISTS

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
NOT_TESTABLE = "not testable"
KINDS = ("paired", "equivalent", "ratio_at_most", "below_latent_dim", "grows_with_latent_dim")
EXACT_SEEDS_MAX = 16  # the sign-flip test enumerates all 2^n sign patterns up to here (random ones beyond)
RANDOM_SIGN_PATTERNS = 2**16  # beyond: this many drawn patterns, a fixed seed (the same table, the same p)
LOG_RATIO = "log(model / against)"  # a ratio cell's statistic; claims.md shows its mean and interval as ratios
ROUNDING_ULPS = 8  # a difference this many float64 ulps of its inputs' size from a boundary lies on it


@dataclass(frozen=True)
class Interval:
    """Mean and two-sided Student-t interval of paired differences, whose spread is at least `floor` (a count's
    rounding: identical counts never make an interval of width 0)."""

    n: int
    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, values: np.ndarray, confidence: float, floor: float = 0.0, test_variance: float = 0.0) -> "Interval":
        """`test_variance`: the variance the mean owes to the test examples drawn (the seeds share one test
        set), added to the seeds' (test_set_variance)."""
        from scipy import stats

        n, mean = len(values), float(np.mean(values))
        if n < 2:
            return cls(n, mean, -math.inf, math.inf)
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * standard_error(values, floor, test_variance))
        return cls(n, mean, mean - half, mean + half)


def standard_error(values: np.ndarray, floor: float = 0.0, test_variance: float = 0.0) -> float:
    """Of the mean of per-seed values: the seeds' spread (at least `floor`) over √n, and the test set's part."""
    spread = max(float(np.std(values, ddof=1)), floor)
    return math.sqrt(spread**2 / len(values) + test_variance)


def uses_exact_test(values: np.ndarray, metric: str) -> bool:
    """Counts and tied differences take the sign-flip test: Student's t assumes a continuous metric."""
    return metric in COUNT_METRICS or len(np.unique(values)) < len(values)


@lru_cache(maxsize=None)
def sign_patterns(n: int) -> np.ndarray:
    """All 2^n sign patterns, (2^n, n)."""
    return np.array(list(itertools.product((1.0, -1.0), repeat=n)))


def sign_flip_pvalue(values: np.ndarray, boundary: float, side: str) -> float:
    """One-sided exact p-value that the differences' centre lies below (`side` 'below') or above the boundary:
    under H0 the differences are symmetric about it, so every sign pattern of their distances is as likely."""
    centred = np.asarray(values, float) - boundary
    with np.errstate(over="ignore"):
        if not np.isfinite(np.abs(centred).sum()):  # sums beyond float64 (the schema bounds margins: none are)
            return 1.0
    exact = len(centred) <= EXACT_SEEDS_MAX
    patterns = sign_patterns(len(centred)) if exact else random_sign_patterns(len(centred))
    flipped = patterns @ np.abs(centred)
    observed, tolerance = centred.sum(), 1e-12 * (1 + np.abs(centred).sum())
    extreme = flipped <= observed + tolerance if side == "below" else flipped >= observed - tolerance
    # drawn patterns: the observed one counts among them, so that p stays valid (Phipson & Smyth 2010)
    return float(extreme.mean()) if exact else float((1 + extreme.sum()) / (1 + len(patterns)))


@lru_cache(maxsize=4)
def random_sign_patterns(n: int) -> np.ndarray:
    """RANDOM_SIGN_PATTERNS sign patterns of n, drawn with a fixed seed."""
    return np.random.default_rng(0).choice((1.0, -1.0), size=(RANDOM_SIGN_PATTERNS, n))


def t_pvalue(values: np.ndarray, boundary: float, side: str, test_variance: float = 0.0) -> float:
    """One-sided Student-t p-value (n − 1 degrees of freedom) that the mean lies below (`side` 'below') or above
    the boundary, its standard error including the test set's part where given."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return 1.0
    error = standard_error(values, test_variance=test_variance)
    if error == 0:  # a constant sample takes the sign-flip test; here only with a test-set part of 0
        below = float(np.mean(values)) < boundary
        return 0.0 if below == (side == "below") and float(np.mean(values)) != boundary else 1.0
    statistic = (float(np.mean(values)) - boundary) / error
    return float(stats.t.cdf(statistic, n - 1) if side == "below" else stats.t.sf(statistic, n - 1))


def bernoulli_kl(p: float, q: float) -> float:
    """KL(Bernoulli(p) ‖ Bernoulli(q)), infinite where q puts no mass on what p does."""
    from scipy.special import rel_entr

    return float(rel_entr(p, q) + rel_entr(1 - p, 1 - q))


def bounded_mean_pvalue(mean: float, n: int, boundary: float, side: str) -> float:
    """One-sided p-value that the mean of values in [0, 1] lies below (`side` 'below') or above `boundary`, from n
    of them averaging `mean`, whatever their distribution: Hoeffding's bound (1963, Theorem 1),
    P(mean ≤ t) ≤ exp(−n·KL(t ‖ μ)) for t ≤ μ, is largest over H0 (μ ≥ boundary) at μ = boundary; above, its
    mirror. Tight where every value sits at a bound (a Bernoulli null): all n at 1 against boundary b give bⁿ."""
    if mean >= boundary if side == "below" else mean <= boundary:
        return 1.0
    return math.exp(-n * bernoulli_kl(mean, boundary))


def bounded_mean_interval(mean: float, n: int, confidence: float) -> tuple[float, float]:
    """The means in [0, 1] that neither one-sided bounded_mean_pvalue rejects at (1 − confidence)/2."""
    from scipy.optimize import brentq

    level = math.log(2 / (1 - confidence)) / n  # n·KL = log(1/α) at each end

    def end(bound: float) -> float:  # KL is infinite at the bound itself where mean ≠ bound: search just inside
        inside = np.nextafter(bound, mean)
        if mean == bound or bernoulli_kl(mean, inside) <= level:
            return bound
        return brentq(lambda mu: bernoulli_kl(mean, mu) - level, mean, inside)

    return end(0.0), end(1.0)


def one_sided_pvalue(values: np.ndarray, boundary: float, side: str, exact: bool, test_variance: float = 0.0) -> float:
    return sign_flip_pvalue(values, boundary, side) if exact else t_pvalue(values, boundary, side, test_variance)


def decision_level(settings: dict) -> float:
    """α: each one-sided test decides at half of what the two-sided interval leaves out."""
    return (1 - settings["confidence"]) / 2


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment: controls the chance of any false rejection among the cells at α."""
    order = np.argsort(pvalues)
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


def side(runs: pd.DataFrame, selector: dict, probes_shown: dict[str, int]) -> pd.DataFrame:
    """The runs of one side of a comparison: a model, at the selector's budget or the main table's."""
    rows = runs[runs["model"] == selector["model"]]
    return rows[rows["probes"] == side_probes(selector, probes_shown)]


def side_probes(selector: dict, probes_shown: dict[str, int]) -> int:
    """A side's budget K: the selector's, else the main table's for its model; NO_PROBES for a model without one."""
    return selector.get("probes", probes_shown.get(selector["model"], NO_PROBES))


LIKELIHOOD_METRICS = ("nll_nats", "bits_per_dim", "elbo_nats", "nll_nats_own_sigma", "bits_per_dim_own_sigma")


def describe(selector: dict, probes_shown: dict[str, int], rows: pd.DataFrame | None = None, metric: str = "") -> str:
    """A side's label: the model, its budget, and for a likelihood the σ its runs were evaluated at."""
    probes = side_probes(selector, probes_shown)
    details = [f"K={probes}"] if probes != NO_PROBES else []
    if rows is not None and metric in LIKELIHOOD_METRICS and "sigma_policy" in rows:
        policies = sorted(rows["sigma_policy"].dropna().unique())
        if metric.endswith("_own_sigma"):
            policies = ["fixed"]
        details += [f"σ {'/'.join(policies)}"] if policies else []
    return f"{selector['model']} ({', '.join(details)})" if details else selector["model"]


def cells(runs: pd.DataFrame, claim: dict) -> list[tuple[str, int]]:
    """(dataset, latent dim) pairs the claim looks at: its datasets (default all), all dims or the largest."""
    chosen = runs if not claim.get("datasets") else runs[runs["dataset"].isin(claim["datasets"])]
    pairs = []
    for dataset, group in chosen.groupby("dataset"):
        dims = sorted(group["latent_dim"].unique())
        pairs += [(dataset, int(d)) for d in (dims[-1:] if claim.get("latent_dims") == "largest" else dims)]
    return pairs


STEP_TIME_METRIC = "step_time_s"  # from the side-by-side timing tables (five time-steps), paired by round


def pair_key(rows: pd.DataFrame) -> str:
    """What pairs two sides' values: the seed of runs, the round of a side-by-side step timing."""
    return "round" if "round" in rows else "seed"


def paired_values(left: pd.DataFrame, right: pd.DataFrame | None, metric: str) -> tuple[pd.DataFrame, str | None]:
    """Seed-matched (or round-matched) metric values of both sides (right None: one side); a reason when they
    cannot decide."""
    key = pair_key(left)
    for rows in [left] + ([right] if right is not None else []):
        if "status" in rows:
            bad = rows[rows["status"] == "diverged"]
            if not bad.empty:
                return pd.DataFrame(), f"diverged run(s): {', '.join(bad['run_dir'].astype(str))}"
        # an infinite value would make NaN differences, which every test reads as extreme
        missing = rows[~np.isfinite(pd.to_numeric(rows[metric], errors="coerce").to_numpy(float))]
        if not missing.empty:
            where = missing["run_dir"] if "run_dir" in missing else missing["model"]
            return pd.DataFrame(), f"{metric} missing or not finite in {', '.join(where.astype(str))}"
        repeated = sorted(set(rows.loc[rows[key].duplicated(), key].tolist()))
        if repeated:  # each copy would pair with the other side's value: n overstated, p understated
            listed = ", ".join(map(str, repeated))
            return pd.DataFrame(), f"{key} {listed} listed more than once among {rows['model'].iloc[0]}'s values"
    runs = ["run_dir"] if "run_dir" in left else []
    values = left.set_index(key)[[metric, "latent_dim", *runs]].rename(columns={metric: "left", "run_dir": "left_run"})
    if right is not None:
        values = values.join(
            right.set_index(key)[[metric, *runs]].rename(columns={metric: "right", "run_dir": "right_run"}), how="inner"
        )
    return values, None


# Metrics whose per-test-example values eval.json keeps; bits/dim is NLL/(D·ln 2) plus a constant, which cancels in
# a difference, so it reads the NLL's.
PER_EXAMPLE_SOURCES = {metric: metric for metric in PER_EXAMPLE_LISTS} | {"bits_per_dim": "nll_nats"}
REEVALUATE = "`snakemake --forcerun evaluate --configfile …` evaluates the sweep again (minutes)"


def per_example_differences(
    values: pd.DataFrame, metric: str, per_example, data_dim: float | None
) -> tuple[pd.DataFrame | None, str | None]:
    """Per test example, model − against of the metric, a row per seed of `values` (paired_values'); None where
    the metric has none (or no per-example source was given), with the reason where a run lacks them.
    `per_example(run_dir, metric)`: a run's values of a PER_EXAMPLE_LISTS metric; `data_dim`: D, for bits/dim."""
    if metric not in PER_EXAMPLE_SOURCES or per_example is None or "right_run" not in values:
        return None, None
    if metric == "bits_per_dim" and data_dim is None:
        return None, "the data dimension D of these runs is not recorded (evaluate them again)"
    rows = {}
    for seed, runs in zip(values.index, zip(values["left_run"], values["right_run"])):
        arrays = [per_example(run, PER_EXAMPLE_SOURCES[metric]) for run in runs]
        for run, array in zip(runs, arrays):
            if array is None:  # its test-set part is unknown: a verdict over seeds alone would overstate
                return None, f"{run} has no per-example {metric} (evaluated before eval.json kept them): {REEVALUATE}"
            if not np.all(np.isfinite(array)):
                return None, f"{run}'s per-example {metric} are not all finite"
        if len(arrays[0]) != len(arrays[1]) or (rows and len(arrays[0]) != len(next(iter(rows.values())))):
            return None, f"the runs were evaluated on test sets of different sizes ({', '.join(runs)}): {REEVALUATE}"
        rows[seed] = np.asarray(arrays[0], float) - np.asarray(arrays[1], float)
    if not rows:  # no paired seeds: the cell says so (min_seeds)
        return None, None
    if len(next(iter(rows.values()))) < 2:
        return None, "one test example: the test set's part of the variance is unknown"
    scale = 1 / (data_dim * math.log(2)) if metric == "bits_per_dim" else 1.0
    return pd.DataFrame.from_dict(rows, orient="index") * scale, None


def data_dimension(rows: pd.DataFrame) -> float | None:
    """The runs' data dimension D, where recorded and one."""
    dims = rows["data_dim"].dropna().unique() if "data_dim" in rows else []
    return float(dims[0]) if len(dims) == 1 else None


def test_set_variance(differences: pd.DataFrame) -> float:
    """What the paired mean owes to which examples the test set holds (every seed is evaluated on the same
    one): the variance over the test examples of the seed-averaged per-example difference, over their number.
    With the seeds' part it slightly overcounts the seed × example noise (conservative)."""
    per_example_mean = differences.mean(axis=0).to_numpy(float)
    return float(np.var(per_example_mean, ddof=1) / len(per_example_mean))


def cell_pvalues(
    diffs: np.ndarray, low: float, high: float, claimed: str, exact: bool, test_variance: float = 0.0
) -> tuple[float, float]:
    """One-sided p-values that the claim holds and that it is false, at its boundary: `below` low (= high) and
    `above` high (= low) share one boundary; `inside` [low, high] holds by two one-sided tests and is false on
    either side (Bonferroni over the two)."""

    def p(boundary, side):
        return one_sided_pvalue(diffs, boundary, side, exact, test_variance)

    if claimed == "below":
        return p(low, "below"), p(low, "above")
    if claimed == "above":
        return p(high, "above"), p(high, "below")
    return max(p(low, "above"), p(high, "below")), min(1.0, 2 * min(p(low, "below"), p(high, "above")))


def agreeing(diffs: np.ndarray, low_threshold: float, high_threshold: float, claimed: str) -> int:
    """How many seeds on their own agree with the claim."""
    if claimed == "below":
        return int(np.sum(diffs < low_threshold))
    if claimed == "above":
        return int(np.sum(diffs > high_threshold))
    return int(np.sum((diffs >= low_threshold) & (diffs <= high_threshold)))


def verdict_row(
    diffs: np.ndarray,
    low: float,
    high: float,
    claimed: str,
    rule: str,
    settings: dict,
    metric: str,
    counts: int = 2,
    test_variance: float | None = None,
) -> dict:
    """A tested cell: mean, interval, seeds agreeing, the test and its two p-values (decided per claim).
    `counts`: how many counts each difference is made of, where the metric is one (each rounded: variance 1/12).
    `test_variance` (per-example metrics): the test set's part of the mean's variance; the test is then t."""
    exact = test_variance is None and uses_exact_test(diffs, metric)
    floor = math.sqrt(counts / 12) if metric in COUNT_METRICS else 0.0
    interval = Interval.of(diffs, settings["confidence"], floor, test_variance or 0.0)
    p_support, p_contradict = cell_pvalues(diffs, low, high, claimed, exact, test_variance or 0.0)
    test = "sign-flip" if exact else "t" if test_variance is None else "t, seeds + test set"
    return {
        "n_seeds": len(diffs),
        "mean": interval.mean,
        "ci_low": interval.low,
        "ci_high": interval.high,
        "seeds_agree": agreeing(diffs, low, high, claimed),
        "test": test,
        "p_support": p_support,
        "p_contradict": p_contradict,
        "rule": rule,
        "reason": "",
    }


def evaluate_cell(
    claim: dict, left: pd.DataFrame, right: pd.DataFrame | None, latent_dim: int, settings: dict, per_example=None
) -> dict:
    """One cell's row: the per-seed statistic of the claim's kind, its interval and p-values, and the rule;
    `per_example(run_dir, metric)`: a run's values of a metric per test example (the test set's part)."""
    metric = claim["metric"]
    values, reason = paired_values(left, right, metric)
    absent = [rows for rows in (left, right) if rows is not None and rows.empty]
    if reason is None and absent:  # another model's runs make this d a cell (its runs may not be finished)
        whose = claim["model"] if absent[0] is left else "the `against` model"
        reason = f"no runs of {whose} at d = {latent_dim} in runs.csv"
    if reason is None and len(values) < settings["min_seeds"]:
        reason = f"{len(values)} paired seed(s), fewer than min_seeds = {settings['min_seeds']}"
    margin, margin_reason = cell_margin(claim, left)
    reason = reason or margin_reason
    if reason is not None:
        return {"n_seeds": len(values), "reason": reason}
    differences, reason = per_example_differences(values, metric, per_example, data_dimension(left))
    if reason is not None:
        return {"n_seeds": len(values), "reason": reason}
    test_variance = None if differences is None else test_set_variance(differences)
    row = kind_cell(claim, values, latent_dim, margin, settings, test_variance)
    if "margin_bits_per_dim" in claim:
        row["rule"] += f" ({claim['margin_bits_per_dim']:g} bits/dim × D = {int(left['data_dim'].iloc[0])} × ln 2)"
    if claim.get("margin_reason"):
        row["rule"] += f"; margin: {claim['margin_reason']}"
    return row


def cell_margin(claim: dict, rows: pd.DataFrame) -> tuple[float, str | None]:
    """The claim's margin in the metric's unit: `margin` as given, or `margin_bits_per_dim` in nats for the
    cell's data dimension D (m · D · ln 2), so that one number means the same at D = 10, 64, 784 and 3072."""
    if "margin_bits_per_dim" not in claim:
        return claim.get("margin", 0.0), None
    data_dim = data_dimension(rows)
    if data_dim is None:
        return 0.0, "the data dimension D of these runs is not recorded (evaluate them again)"
    return claim["margin_bits_per_dim"] * data_dim * math.log(2), None


def kind_cell(
    claim: dict,
    values: pd.DataFrame,
    latent_dim: int,
    margin: float,
    settings: dict,
    test_variance: float | None = None,
) -> dict:
    """The per-seed statistic of the claim's kind at `margin`, tested (verdict_row); `test_variance`: the test
    set's part of a paired difference's variance."""
    kind = claim["kind"]
    if kind == "below_latent_dim":  # the counts themselves, not differences: a bounded mean's test
        return count_below_latent_dim_row(values["left"].to_numpy(float), latent_dim, margin, settings)
    diffs, low, high, claimed, rule = kind_statistic(claim, values, margin)
    # a log ratio's rounding is relative, whatever the values' size
    sizes = 0 if kind == "ratio_at_most" else values["left"].abs() + values["right"].abs()
    diffs = onto_boundaries(diffs, (low, high), np.asarray(sizes, float))
    if kind in ("paired", "equivalent"):
        return verdict_row(diffs, low, high, claimed, rule, settings, claim["metric"], test_variance=test_variance)
    both = values[["left", "right"]].to_numpy(float)  # ratio_at_most
    if not np.all(np.isfinite(both) & (both > 0)):  # two negative values would make a positive ratio
        return {"n_seeds": len(diffs), "reason": f"{claim['metric']} is not a finite positive number in every run"}
    return verdict_row(diffs, low, high, claimed, rule, settings, claim["metric"])


def count_below_latent_dim_row(counts: np.ndarray, latent_dim: int, margin: float, settings: dict) -> dict:
    """below_latent_dim: a count of directions lies in 0…d, so wherever the boundary d − margin is inside, the
    null includes a rare collapse (most seeds at d, a few far below), skewed, which the sign-flip and t tests
    assume away. Its test and interval are Hoeffding's for the mean of a bounded value instead (count / d in
    [0, 1]), valid whatever the counts' distribution. Margin 0: one seed below d proves the mean below d, and
    no number of seeds at d refutes it."""
    if np.any((counts < 0) | (counts > latent_dim)):
        return {"n_seeds": len(counts), "reason": f"a count outside 0…d = {latent_dim}: not a count of directions"}
    n, share, boundary = len(counts), float(np.mean(counts)) / latent_dim, 1 - margin / latent_dim
    low, high = bounded_mean_interval(share, n, settings["confidence"])
    row = {
        "n_seeds": n,
        "mean": share * latent_dim - latent_dim,
        "ci_low": low * latent_dim - latent_dim,
        "ci_high": high * latent_dim - latent_dim,
        "seeds_agree": int(np.sum(counts - latent_dim < -margin)),
        "test": "bounded (Hoeffding)",
        "p_support": bounded_mean_pvalue(share, n, boundary, "below"),
        "p_contradict": bounded_mean_pvalue(share, n, boundary, "above"),
        "rule": f"metric − d < {-margin:+g}",
        "reason": "",
    }
    if share == 1 and margin == 0:
        row["reason"] = "every seed keeps all d units; margin 0 (any collapse, however rare) cannot be refuted"
    return row


def kind_statistic(claim: dict, values: pd.DataFrame, margin: float) -> tuple[np.ndarray, float, float, str, str]:
    """A comparing claim kind's per-seed values and what they must show: (values, low, high, claimed, rule), the claim
    holding where they lie `claimed` ("below", "above", "inside") of the boundaries low and high."""
    kind = claim["kind"]
    if kind == "paired":  # better by `margin`: model − against below −margin (or above +margin); else not
        lower = claim.get("better", "lower") == "lower"
        boundary = -margin if lower else margin
        rule = f"model − against {'<' if lower else '>'} {boundary:+g}"
        return paired_differences(values), boundary, boundary, "below" if lower else "above", rule
    if kind == "equivalent":
        return paired_differences(values), -margin, margin, "inside", f"model − against inside ±{margin:g}"
    if kind == "ratio_at_most":  # on the log scale, where a ratio's interval is symmetric
        factor = math.log(claim["factor"])
        with np.errstate(divide="ignore", invalid="ignore"):  # a value ≤ 0: kind_cell says so
            diffs = np.log(values["left"].to_numpy(float) / values["right"].to_numpy(float))
        return diffs, factor, factor, "below", f"{LOG_RATIO} < log {claim['factor']:g}"
    raise ValueError(f"unknown claim kind {kind!r}")


def onto_boundaries(diffs: np.ndarray, boundaries: tuple[float, ...], sizes: np.ndarray) -> np.ndarray:
    """Each difference within float64 rounding of a boundary, set onto it. A difference of values of size M that
    is exactly the margin lands some M·ulp to one side of it, the same side in every seed, and the tests read
    that as decided (at M ~ 1e5, every time); `sizes`: per seed, the sum of the magnitudes it was computed from."""
    with np.errstate(invalid="ignore"):  # a ratio of values ≤ 0 is NaN here: kind_cell says so
        resolution = ROUNDING_ULPS * np.finfo(float).eps * (1 + np.abs(sizes) + max(map(abs, boundaries)))
        for boundary in boundaries:
            diffs = np.where(np.abs(diffs - boundary) <= resolution, boundary, diffs)
    return diffs


def paired_differences(values: pd.DataFrame) -> np.ndarray:
    return (values["left"] - values["right"]).to_numpy(float)


def trend_cell(
    claim: dict, left: pd.DataFrame, right: pd.DataFrame, dims: list[int], settings: dict, per_example=None
) -> dict:
    """grows_with_latent_dim: per seed, (model − against) at the largest d minus that at the smallest d is
    above +margin (`better: higher`) or below −margin (`better: lower`); a likelihood's test-set part is that
    of the same growth per test example."""
    metric = claim["metric"]
    margin, margin_reason = cell_margin(claim, left)
    if margin_reason is not None:
        return {"n_seeds": 0, "reason": margin_reason}
    per_dim, sizes, examples = [], [], []
    for d in (dims[0], dims[-1]):
        values, reason = paired_values(left[left["latent_dim"] == d], right[right["latent_dim"] == d], metric)
        if reason is None:
            differences, reason = per_example_differences(values, metric, per_example, data_dimension(left))
        if reason is not None:
            return {"n_seeds": 0, "reason": reason}
        per_dim.append(values["left"] - values["right"])
        sizes.append(values["left"].abs() + values["right"].abs())
        examples.append(differences)
    growth = (per_dim[1] - per_dim[0]).dropna()
    scale = (sizes[0] + sizes[1]).reindex(growth.index).to_numpy(float)
    if len(growth) < settings["min_seeds"]:
        return {
            "n_seeds": len(growth),
            "reason": f"{len(growth)} paired seed(s) over d = {dims[0]}…{dims[-1]} (min_seeds = {settings['min_seeds']})",
        }
    test_variance = None
    if examples[0] is not None:  # both d evaluated on one test set (per_example_differences checked each)
        if examples[0].shape[1] != examples[1].shape[1]:
            return {
                "n_seeds": len(growth),
                "reason": f"d = {dims[0]} and d = {dims[-1]} were evaluated on other test sets",
            }
        test_variance = test_set_variance(examples[1].loc[growth.index] - examples[0].loc[growth.index])
    higher = claim.get("better", "higher") == "higher"
    boundary = margin if higher else -margin
    rule = f"(model − against at d={dims[-1]}) − (at d={dims[0]}) {'>' if higher else '<'} {boundary:+g}"
    growth = onto_boundaries(growth.to_numpy(float), (boundary,), scale)
    claimed = "above" if higher else "below"
    return verdict_row(
        growth, boundary, boundary, claimed, rule, settings, metric, counts=4, test_variance=test_variance
    )


def decide_cells(rows: list[dict], settings: dict) -> None:
    """Each cell's verdict from its Holm-adjusted p-values (among the claim's tested cells) at α."""
    alpha = decision_level(settings)
    tested = [row for row in rows if "p_support" in row]
    for key in ("p_support", "p_contradict"):
        for row, adjusted in zip(tested, holm([row[key] for row in tested])):
            row[f"{key}_holm"] = adjusted
    for row in rows:
        if row.get("verdict") == NOT_TESTABLE:  # decided by what the sweep holds, before any test
            continue
        row["verdict"] = (
            SUPPORTED
            if row.get("p_support_holm", 1.0) <= alpha
            else CONTRADICTED
            if row.get("p_contradict_holm", 1.0) <= alpha
            else INCONCLUSIVE
        )


COMPARING_KINDS = ("paired", "equivalent", "ratio_at_most", "grows_with_latent_dim")  # need `against`
# The optional keys each kind reads, besides `probes` and `datasets` (every kind): a key a kind would ignore is
# refused at the dry run (five.sweep.table.check_claims), so that no claim says more than its rule tests.
KIND_OPTIONS = {
    "paired": {"against", "better", "margin", "margin_bits_per_dim", "margin_reason", "latent_dims"},
    "equivalent": {"against", "margin", "margin_bits_per_dim", "margin_reason", "latent_dims"},
    "ratio_at_most": {"against", "factor", "latent_dims"},
    "below_latent_dim": {"margin", "margin_reason", "latent_dims"},
    "grows_with_latent_dim": {"against", "better", "margin", "margin_bits_per_dim", "margin_reason"},  # all d
}


def claim_selectors(claim: dict) -> list[dict]:
    """The claim's model, then each `against` side, as selectors {"model"[, "probes"]} (a bare name: the
    model at the main table's budget)."""
    own = {"model": claim["model"], **({"probes": claim["probes"]} if "probes" in claim else {})}
    return [own] + [{"model": other} if isinstance(other, str) else other for other in claim.get("against", [])]


def claim_rows(
    runs: pd.DataFrame, claim: dict, settings: dict, probes_shown: dict[str, int], per_example=None
) -> list[dict]:
    """The cells of one claim: each `against` side × data set × latent dim (or the d range of a trend),
    decided together (Holm)."""
    left_selector, *right_selectors = claim_selectors(claim)
    rows = []
    for right_selector in right_selectors or [None]:
        left = side(runs, left_selector, probes_shown)
        right = side(runs, right_selector, probes_shown) if right_selector else None
        metric = claim["metric"]
        base = {
            "claim": claim["id"],
            "statement": claim["statement"],
            "metric": metric,
            "model": describe(left_selector, probes_shown, left, metric),
            "against": describe(right_selector, probes_shown, right, metric) if right_selector else "",
        }
        if claim["kind"] == "grows_with_latent_dim":
            for dataset in sorted({dataset for dataset, _ in cells(runs, claim)}):
                # the d range of the claim's own runs (another model's larger d is no cell of this claim)
                sides = pd.concat([left, right])
                dims = sorted(sides.loc[sides["dataset"] == dataset, "latent_dim"].unique().tolist())
                if not dims:
                    rows.append(base | {"dataset": dataset, "latent_dim": "", "n_seeds": 0, "reason": "no runs here"})
                    continue
                if len(dims) == 1:  # no number of seeds could show a growth here: not a cell the claim can fail
                    untestable = {"verdict": NOT_TESTABLE, "reason": f"only d = {dims[0]} is swept here: no growth"}
                    rows.append(base | {"dataset": dataset, "latent_dim": str(dims[0]), "n_seeds": 0} | untestable)
                    continue
                verdict = trend_cell(
                    claim,
                    left[left["dataset"] == dataset],
                    right[right["dataset"] == dataset],
                    dims,
                    settings,
                    per_example,
                )
                rows.append(base | {"dataset": dataset, "latent_dim": f"{dims[0]}→{dims[-1]}"} | verdict)
            continue
        for dataset, latent_dim in cells(runs, claim):

            def at(frame):
                return frame[(frame["dataset"] == dataset) & (frame["latent_dim"] == latent_dim)]

            verdict = evaluate_cell(
                claim, at(left), None if right is None else at(right), latent_dim, settings, per_example
            )
            rows.append(base | {"dataset": dataset, "latent_dim": latent_dim} | verdict)
    decide_cells(rows, settings)
    return rows


def overall_row(claim: dict, rows: list[dict], runs: pd.DataFrame, settings: dict) -> dict:
    """The claim's verdict over its testable cells: supported if every one is, contradicted if any is, else
    inconclusive; a claim without cells, or without testable ones (a growth where each data set sweeps one d),
    is not testable with this config, and says why."""
    row = {"claim": claim["id"], "statement": claim["statement"], "dataset": "all", "latent_dim": "all"}
    if not rows:
        wanted = claim.get("datasets")
        why = f"its data sets ({', '.join(wanted)}) have no runs in this sweep" if wanted else "the sweep has no runs"
        return row | {"verdict": NOT_TESTABLE, "reason": f"no cells: {why}", "rule": ""}
    untestable = [cell for cell in rows if cell["verdict"] == NOT_TESTABLE]
    if len(untestable) == len(rows):
        why = "; ".join(f"{cell['dataset']}: {cell['reason']}" for cell in untestable)
        return row | {"verdict": NOT_TESTABLE, "reason": f"no testable cells ({why})", "rule": ""}
    testable = [cell for cell in rows if cell["verdict"] != NOT_TESTABLE]
    verdicts = [cell["verdict"] for cell in testable]
    tested = sum("p_support" in cell for cell in testable)
    verdict = (
        CONTRADICTED
        if CONTRADICTED in verdicts
        else SUPPORTED
        if verdicts.count(SUPPORTED) == len(testable)
        else INCONCLUSIVE
    )
    alpha = decision_level(settings)
    reason = (
        f"{verdicts.count(SUPPORTED)} of {len(testable)} cells supported, {verdicts.count(CONTRADICTED)} "
        f"contradicted, {verdicts.count(INCONCLUSIVE)} inconclusive ({len(testable) - tested} without a test)"
        + (f"; {len(untestable)} not testable" if untestable else "")
    )
    return row | {
        "verdict": verdict,
        "reason": reason,
        "rule": f"every cell supported / any cell contradicted, Holm-adjusted p <= {alpha:g} one-sided",
    }


def evaluate_claims(
    runs: pd.DataFrame,
    settings: dict,
    probes_shown: dict[str, int],
    step_times: pd.DataFrame | None = None,
    per_example=None,
) -> pd.DataFrame:
    """One overall row per claim of `settings['list']` (every claim has one), then every cell. Claims on
    step_time_s are decided from `step_times` (the side-by-side timing tables), the others from the runs;
    `per_example(run_dir, metric)`: a run's values of a metric per test example, which widen the intervals of
    means over test examples by the test set's part (None: over seeds alone, test "t"; a run that lacks them
    makes its cell inconclusive)."""
    overall, detail = [], []
    for claim in settings["list"]:
        if claim["metric"] == STEP_TIME_METRIC and step_times is None:
            overall.append(
                {
                    "claim": claim["id"],
                    "statement": claim["statement"],
                    "dataset": "all",
                    "latent_dim": "all",
                    "verdict": NOT_TESTABLE,
                    "rule": "",
                    "reason": "no step times were measured (the workflow's step_times jobs make them)",
                }
            )
            continue
        table = step_times if claim["metric"] == STEP_TIME_METRIC else runs
        rows = claim_rows(table, claim, settings, probes_shown, per_example)
        overall.append(overall_row(claim, rows, table, settings))
        detail += rows
    return pd.DataFrame(overall + detail)


CELL_COLUMNS = [
    "claim",
    "dataset",
    "latent_dim",
    "model",
    "against",
    "metric",
    "n_seeds",
    "mean",
    "ci_low",
    "ci_high",
    "seeds_agree",
    "test",
    "p_support_holm",
    "p_contradict_holm",
    "verdict",
    "rule",
    "reason",
]
CELL_HEADINGS = {  # a step-time cell pairs the rounds of one timing, not seeds
    "n_seeds": "n (seeds or rounds)",
    "seeds_agree": "agree",
    "p_support_holm": "p holds (Holm)",
    "p_contradict_holm": "p false (Holm)",
}


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
    note = [f"**Note:** {settings['note']}", ""] if settings.get("note") else []
    verdicts = overall[["claim", "statement", "verdict", "reason"]].rename(columns={"reason": "cells"})
    lines = [
        "# Do the paper's claims hold?",
        "",
        f"Made from: {made_from}.",
        "",
        *note,
        method_text(settings),
        "",
        markdown_table(verdicts),
        "",
        "## Every cell",
        "",
        markdown_table(cell_table(table)),
        "",
    ]
    out_prefix.with_suffix(".md").write_text("\n".join(lines))
    verdict_lines = [
        f"{row.claim} {row.verdict.upper():<13} {row.statement} ({row.reason})" for row in overall.itertuples()
    ]
    return "\n".join(([f"Note: {settings['note']}"] if settings.get("note") else []) + verdict_lines)


def markdown_table(frame: pd.DataFrame) -> str:
    """`frame` as a Markdown table whose text cells may hold '|' (a statement's |x|): escaped, not a column."""
    escaped = frame.map(lambda value: value.replace("|", "\\|") if isinstance(value, str) else value)
    return escaped.to_markdown(index=False)


def cell_table(table: pd.DataFrame) -> pd.DataFrame:
    """Every cell, numbers to 4 digits and "k/n" seeds agreeing, for claims.md; a ratio cell's mean and interval
    as ratios (exp of the log ratio's: the geometric mean), marked ×, its rule on the ratio itself."""
    detail = table[table["dataset"] != "all"].reindex(columns=CELL_COLUMNS)
    ratio = detail["rule"].astype(str).str.startswith(LOG_RATIO)
    for column in ("mean", "ci_low", "ci_high"):
        with np.errstate(over="ignore"):  # a log ratio beyond 709 shows as inf×
            detail[column] = [
                "" if pd.isna(v) else f"{np.exp(v):.4g}×" if is_ratio else f"{v:.4g}"
                for v, is_ratio in zip(detail[column], ratio)
            ]
    for column in ("p_support_holm", "p_contradict_holm"):
        detail[column] = detail[column].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    detail.loc[ratio, "rule"] = (
        detail.loc[ratio, "rule"].str.replace(f"{LOG_RATIO} < log ", "model / against < ", regex=False)
        + " (geometric mean over the pairs)"
    )
    detail["seeds_agree"] = [  # none counted (a cell no test decided): blank, as in claims.csv, not 0/n
        "" if pd.isna(agree) or pd.isna(seeds) or not seeds else f"{int(agree)}/{int(seeds)}"
        for agree, seeds in zip(detail["seeds_agree"], detail["n_seeds"])
    ]
    detail[["test", "rule", "reason"]] = detail[["test", "rule", "reason"]].astype(object).fillna("")  # none: undecided
    return detail.rename(columns=CELL_HEADINGS)


def method_text(settings: dict) -> str:
    """How claims.md's verdicts were decided, with the settings' level and α."""
    level, alpha = int(round(100 * settings["confidence"])), decision_level(settings)
    return (
        f"Paired over seeds (same seed, same data order; step times: over the rounds of one side-by-side "
        f"timing per data set, `five time-steps`): the mean paired difference (of a ratio: of the log ratios, "
        f"shown here as the geometric mean ratio ×) and a two-sided {level}% Student-t interval (for counts, its "
        "spread at least their rounding, 1/√12 per count). Each cell has "
        "two one-sided p-values at the claim's boundary, that the claim holds and that it is false (Student-t; "
        f"for counts and tied differences the sign-flip test, exact up to {EXACT_SEEDS_MAX} seeds and over "
        f"{RANDOM_SIGN_PATTERNS} drawn sign patterns beyond; its smallest p-value with n seeds is 2⁻ⁿ, "
        f"1/{RANDOM_SIGN_PATTERNS + 1} beyond), "
        f"Holm-adjusted over the claim's cells and decided at {alpha:g}; at least {settings['min_seeds']} paired "
        "seeds per cell, else inconclusive. A claim is supported if every cell is, contradicted if any cell is. "
        "Intervals of means over test examples (test `t, seeds + test set`) carry the test set's draw: every seed is evaluated on the same test examples, so the variance over examples of the "
        "seed-averaged per-example difference, over their number, is added to the seeds' part. Where a claim "
        f"sits exactly at its boundary in every cell, it is declared contradicted, and supported, each with "
        f"probability at most {alpha:g}, where each cell's per-seed differences are about normal (t) or "
        "symmetric about the boundary (sign-flip); strongly skewed ones decide wrongly more often. A count "
        "below d (`below_latent_dim`) lies in 0…d, skewed by a rare collapse: its test and interval are "
        "Hoeffding's for a bounded mean (test `bounded (Hoeffding)`), which hold their rate whatever the "
        "counts' distribution. The intervals are per cell, not adjusted."
    )
