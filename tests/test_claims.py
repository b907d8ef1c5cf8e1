"""The claims rules on synthetic runs tables whose verdicts are known by construction."""

import math

import pandas as pd
import pytest

from five.claims import CONTRADICTED, INCONCLUSIVE, SUPPORTED, Interval, evaluate_claims, write_claims

SETTINGS = {"min_seeds": 3, "confidence": 0.95}
SHOWN = {"five": 1, "fif": 1}


def runs_table(values: dict[tuple[str, int], list[float]], metric="nll_nats", dataset="digits", diverged=()):
    """One row per (model, latent dim, seed) with the given metric values; (model, d, seed) in `diverged`
    is marked diverged with no metric."""
    rows = []
    for (model, latent_dim), per_seed in values.items():
        for seed, value in enumerate(per_seed):
            bad = (model, latent_dim, seed) in diverged
            rows.append({"dataset": dataset, "model": model, "latent_dim": latent_dim,
                         "probes": SHOWN.get(model, 0), "seed": seed, "status": "diverged" if bad else "complete",
                         "run_dir": f"results/{dataset}/{model}/d{latent_dim}/s{seed}",
                         metric: math.nan if bad else value})
    return pd.DataFrame(rows)


def verdicts(runs, claim):
    table = evaluate_claims(runs, SETTINGS | {"list": [claim]}, SHOWN)
    return table[table["dataset"] == "all"].iloc[0], table[table["dataset"] != "all"]


C1 = {"id": "C1", "statement": "five beats vae", "kind": "paired", "model": "five", "against": ["vae"],
      "metric": "nll_nats", "better": "lower", "margin": 0}


def test_a_consistent_paired_win_is_supported_with_its_t_interval():
    runs = runs_table({("five", 4): [10.0, 11.0, 12.5], ("vae", 4): [11.0, 12.2, 13.3]})
    overall, cells = verdicts(runs, C1)
    assert overall["verdict"] == SUPPORTED
    cell = cells.iloc[0]
    # differences −1.0, −1.2, −0.8: mean −1, sd 0.2, t(0.975, 2) = 4.3027
    half = 4.302653 * 0.2 / math.sqrt(3)
    assert cell["mean"] == pytest.approx(-1.0) and cell["ci_high"] == pytest.approx(-1.0 + half, rel=1e-5)
    assert cell["seeds_agree"] == 3 and cell["n_seeds"] == 3


def test_a_consistent_paired_loss_is_contradicted():
    runs = runs_table({("five", 4): [12.0, 13.0, 14.5], ("vae", 4): [11.0, 12.2, 13.3]})
    overall, cells = verdicts(runs, C1)
    assert overall["verdict"] == CONTRADICTED and cells.iloc[0]["seeds_agree"] == 0


def test_a_noisy_difference_is_inconclusive():
    runs = runs_table({("five", 4): [10.0, 13.0, 11.0], ("vae", 4): [11.0, 12.0, 11.5]})
    overall, cells = verdicts(runs, C1)
    assert overall["verdict"] == INCONCLUSIVE and cells.iloc[0]["ci_low"] < 0 < cells.iloc[0]["ci_high"]


def test_too_few_seeds_is_inconclusive_saying_why():
    runs = runs_table({("five", 4): [10.0, 11.0], ("vae", 4): [11.0, 12.2]})
    overall, cells = verdicts(runs, C1)
    assert overall["verdict"] == INCONCLUSIVE and "fewer than min_seeds = 3" in cells.iloc[0]["reason"]


def test_a_diverged_run_makes_its_cell_inconclusive_naming_it():
    runs = runs_table({("five", 4): [10.0, 11.0, 12.5, 9.0], ("vae", 4): [11.0, 12.2, 13.3, 10.0]},
                      diverged={("vae", 4, 1)})
    overall, cells = verdicts(runs, C1)
    assert overall["verdict"] == INCONCLUSIVE and "results/digits/vae/d4/s1" in cells.iloc[0]["reason"]


def test_one_contradicted_cell_makes_the_claim_contradicted():
    runs = runs_table({("five", 2): [10.0, 11.0, 12.5], ("vae", 2): [11.0, 12.2, 13.3],
                       ("five", 8): [12.0, 13.0, 14.5], ("vae", 8): [11.0, 12.2, 13.3]})
    overall, cells = verdicts(runs, C1)
    assert list(cells["verdict"]) == [SUPPORTED, CONTRADICTED] and overall["verdict"] == CONTRADICTED
    assert overall["reason"] == "cells: 1 supported, 1 contradicted, 0 inconclusive"


def test_collapse_below_d_growth_with_d_and_equivalence():
    au = "active_units_eigen"
    runs = runs_table({("vae", 2): [2, 2, 2], ("vae", 16): [9, 10, 8], ("five", 2): [2, 2, 2],
                       ("five", 16): [15, 16, 15]}, metric=au)
    below = {"id": "C2a", "statement": "", "kind": "below_latent_dim", "model": "vae", "metric": au,
             "latent_dims": "largest"}
    assert verdicts(runs, below)[0]["verdict"] == SUPPORTED
    no_collapse = runs_table({("vae", 16): [16, 16, 16]}, metric=au)
    assert verdicts(no_collapse, below)[0]["verdict"] == CONTRADICTED
    grows = {"id": "C2e", "statement": "", "kind": "grows_with_latent_dim", "model": "five", "against": ["vae"],
             "metric": au, "better": "higher"}
    overall, cells = verdicts(runs, grows)
    assert overall["verdict"] == SUPPORTED and cells.iloc[0]["mean"] == pytest.approx((6 + 6 + 7) / 3)
    equivalent = {"id": "C4", "statement": "", "kind": "equivalent", "model": "five", "against": ["vae"],
                  "metric": "nll_nats", "margin": 0.5}
    close = runs_table({("five", 4): [10.0, 11.0, 12.0], ("vae", 4): [10.1, 10.9, 12.05]})
    far = runs_table({("five", 4): [10.0, 11.0, 12.0], ("vae", 4): [12.0, 13.1, 13.9]})
    assert verdicts(close, equivalent)[0]["verdict"] == SUPPORTED
    assert verdicts(far, equivalent)[0]["verdict"] == CONTRADICTED


def test_cost_ratio_and_the_written_report(tmp_path):
    runs = runs_table({("five", 4): [0.25, 0.26, 0.24], ("vae", 4): [0.1, 0.1, 0.1]}, metric="epoch_time_s")
    claim = {"id": "C3", "statement": "cheap", "kind": "ratio_at_most", "model": "five", "against": ["vae"],
             "metric": "epoch_time_s", "factor": 3}
    assert verdicts(runs, claim)[0]["verdict"] == SUPPORTED
    assert verdicts(runs, claim | {"factor": 2})[0]["verdict"] == CONTRADICTED
    table = evaluate_claims(runs, SETTINGS | {"list": [claim]}, SHOWN)
    summary = write_claims(table, tmp_path / "claims", SETTINGS)
    assert summary.startswith("C3 SUPPORTED") and "95% Student-t" in (tmp_path / "claims.md").read_text()
    assert len(pd.read_csv(tmp_path / "claims.csv")) == 2


def test_interval_of_one_value_is_unbounded():
    assert Interval.of(pd.Series([1.0]).to_numpy(), 0.95).low == -math.inf
