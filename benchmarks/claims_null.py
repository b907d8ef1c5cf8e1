"""How often the claims rules decide wrongly where a claim sits exactly at its boundary, one cell, by the shape of
the per-seed differences: the rate config/README.md#claims states (at most α = 2.5% each way) and where skew
breaks it.

    .venv/bin/python -m benchmarks.claims_null [--tables 2000]

Each case draws `tables` cells of paired differences whose mean is the boundary and prints how often the cell
came out supported and contradicted, with a 95% Clopper–Pearson interval.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from scipy import stats

from five.sweep.claims import CONTRADICTED, SUPPORTED, decide_cells, verdict_row

SETTINGS = {"min_seeds": 2, "confidence": 0.95}
LOG3 = math.log(3)
# name, metric, boundary, seeds, draw(generator, n) of differences whose mean is the boundary
CASES = [
    ("normal", "nll_nats", 0.0, 3, lambda g, n: g.normal(0, 1, n)),
    ("normal", "nll_nats", 0.0, 10, lambda g, n: g.normal(0, 1, n)),
    ("t, 2 df (heavy, symmetric)", "nll_nats", 0.0, 6, lambda g, n: g.standard_t(2, n)),
    ("log-normal (right-skewed)", "nll_nats", 0.0, 3, lambda g, n: g.lognormal(0, 1, n) - math.exp(0.5)),
    ("log-normal (right-skewed)", "nll_nats", 0.0, 6, lambda g, n: g.lognormal(0, 1, n) - math.exp(0.5)),
    ("log-normal (right-skewed)", "nll_nats", 0.0, 10, lambda g, n: g.lognormal(0, 1, n) - math.exp(0.5)),
    ("counts −1 (2/3) or +2 (1/3)", "active_units_eigen", 0.0, 6, lambda g, n: g.choice([-1.0, -1.0, 2.0], n)),
    ("log step-time ratio, exponential noise", "step_time_s", LOG3, 10, lambda g, n: LOG3 + g.exponential(1, n) - 1),
]


def rates(metric: str, boundary: float, seeds: int, draw, tables: int, seed: int = 0) -> dict[str, int]:
    """How many of `tables` one-cell claims ('below the boundary') came out supported and contradicted."""
    generator = np.random.default_rng(seed)
    counts = {SUPPORTED: 0, CONTRADICTED: 0}
    for _ in range(tables):
        row = verdict_row(draw(generator, seeds), boundary, boundary, "below", "", SETTINGS, metric)
        decide_cells([row], SETTINGS)
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    return counts


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    low = stats.beta.ppf(0.025, k, n - k + 1) if k else 0.0
    high = stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return float(low), float(high)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=2000)
    args = parser.parse_args(argv)
    print(f"one cell at its boundary, {args.tables} tables per case; stated: at most 2.5% each way")
    for name, metric, boundary, seeds, draw in CASES:
        counts = rates(metric, boundary, seeds, draw, args.tables)
        shown = []
        for verdict in (SUPPORTED, CONTRADICTED):
            low, high = clopper_pearson(counts[verdict], args.tables)
            shown.append(f"{verdict} {100 * counts[verdict] / args.tables:5.1f}% [{100 * low:.1f}, {100 * high:.1f}]")
        print(f"  {name:<40} {seeds:>2} seeds: {', '.join(shown)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
