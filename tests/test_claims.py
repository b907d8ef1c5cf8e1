"""The claims rules on synthetic runs tables whose verdicts are known by construction."""

import itertools
import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from five.sweep.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_TESTABLE,
    SUPPORTED,
    Interval,
    decide_cells,
    evaluate_claims,
    holm,
    verdict_row,
    write_claims,
)

SETTINGS = {"min_seeds": 3, "confidence": 0.95}
SHOWN = {"five": 1, "fif": 1}


def runs_table(values: dict[tuple[str, int], list[float]], metric="nll_nats", dataset="digits", diverged=()):
    """One row per (model, latent dim, seed) with the given metric values; (model, d, seed) in `diverged`
    is marked diverged with no metric."""
    rows = []
    for (model, latent_dim), per_seed in values.items():
        for seed, value in enumerate(per_seed):
            bad = (model, latent_dim, seed) in diverged
            rows.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "latent_dim": latent_dim,
                    "probes": SHOWN.get(model, 0),
                    "seed": seed,
                    "status": "diverged" if bad else "complete",
                    "run_dir": f"results/{dataset}/{model}/d{latent_dim}/s{seed}",
                    metric: math.nan if bad else value,
                }
            )
    return pd.DataFrame(rows)


def verdicts(runs, claim):
    table = evaluate_claims(runs, SETTINGS | {"list": [claim]}, SHOWN)
    return table[table["dataset"] == "all"].iloc[0], table[table["dataset"] != "all"]


C1 = {
    "id": "C1",
    "statement": "five beats vae",
    "kind": "paired",
    "model": "five",
    "against": ["vae"],
    "metric": "nll_nats",
    "better": "lower",
    "margin": 0,
}


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
    runs = runs_table(
        {("five", 4): [10.0, 11.0, 12.5, 9.0], ("vae", 4): [11.0, 12.2, 13.3, 10.0]}, diverged={("vae", 4, 1)}
    )
    overall, cells = verdicts(runs, C1)
    assert overall["verdict"] == INCONCLUSIVE and "results/digits/vae/d4/s1" in cells.iloc[0]["reason"]


@pytest.mark.parametrize("five_first, vae_first", [(math.inf, math.inf), (10.0, math.inf), (-math.inf, 10.5)])
@pytest.mark.parametrize("metric", ["nll_nats", "active_units_eigen"])
def test_an_infinite_value_makes_its_cell_inconclusive_naming_it(five_first, vae_first, metric):
    """inf − inf is NaN, and a NaN difference compared with anything is False: the sign-flip test then found
    every pattern less extreme (p = 0, "supported" from 3 seeds, below its smallest p of 2⁻³)."""
    runs = runs_table({("five", 4): [five_first, 10.0, 11.0], ("vae", 4): [vae_first, 10.5, 11.5]}, metric=metric)
    overall, cells = verdicts(runs, C1 | {"metric": metric})
    first_bad = "five" if not math.isfinite(five_first) else "vae"
    assert overall["verdict"] == INCONCLUSIVE and "p_support" not in cells
    assert f"{metric} missing or not finite in results/digits/{first_bad}/d4/s0" in cells.iloc[0]["reason"]


@pytest.mark.parametrize("size", [1e2, 1e5, 1e8])
@pytest.mark.parametrize(
    "claim",
    [C1 | {"margin": 0.1}, C1 | {"kind": "equivalent", "margin": 0.1}, C1 | {"better": "higher", "margin": 0.3}],
    ids=["better by the margin", "equivalent within it", "higher by it"],
)
def test_sides_exactly_a_margin_apart_are_never_decided_whatever_their_size(size, claim):
    """Every seed's difference is the boundary, computed from values of size M: it lands some M·ulp to one
    side, the same in every seed, which was 'supported' at M = 1e5 in every table; it is the boundary."""
    gap = claim["margin"] if claim.get("better") == "higher" else -claim["margin"]
    for trial in range(10):
        against = np.random.default_rng(trial).normal(size, size / 50, 6)
        runs = runs_table({("five", 4): list(against + gap), ("vae", 4): list(against)})
        overall, cells = verdicts(runs, claim)
        assert overall["verdict"] == INCONCLUSIVE, cells.iloc[0].to_dict()
        assert cells.iloc[0]["p_support"] == cells.iloc[0]["p_contradict"] == 1.0
    beyond = gap + (1e-6 if gap > 0 else -1e-6) * size / 1e2  # past the boundary by far more than rounding
    against = np.random.default_rng(0).normal(size, size / 50, 6)
    overall, cells = verdicts(runs_table({("five", 4): list(against + beyond), ("vae", 4): list(against)}), claim)
    if claim["kind"] == "equivalent":  # outside by far: as false as 6 seeds can show (sign-flip, Bonferroni: 2/64)
        assert cells.iloc[0]["p_contradict"] <= 2 / 64 and overall["verdict"] != SUPPORTED, cells.iloc[0].to_dict()
    else:
        assert overall["verdict"] == SUPPORTED, cells.iloc[0].to_dict()


def test_a_growth_of_exactly_the_margin_is_never_decided_whatever_the_size():
    grows = {"id": "C", "statement": "", "kind": "grows_with_latent_dim", "model": "five", "against": ["vae"]}
    for trial in range(10):
        against = list(np.random.default_rng(trial).normal(1e5, 2e3, 6))
        runs = runs_table(
            {("vae", 2): against, ("vae", 8): against, ("five", 2): against, ("five", 8): [v + 0.3 for v in against]}
        )
        overall, cells = verdicts(runs, grows | {"metric": "nll_nats", "margin": 0.3})
        assert overall["verdict"] == INCONCLUSIVE and cells.iloc[0]["p_support"] == 1.0, cells.iloc[0].to_dict()


def test_a_trend_spans_the_d_of_its_own_models_not_another_models():
    """FIF also run at d = 64 is no reason for a trend of FIVE against the VAE to look there (no runs of theirs)."""
    grows = {"id": "C", "statement": "", "kind": "grows_with_latent_dim", "model": "five", "against": ["vae"]}
    against = [10.0, 11.0, 12.0, 10.5, 11.5, 12.5]
    runs = runs_table(
        {
            ("vae", 2): against,
            ("vae", 8): against,
            ("five", 2): against,
            ("five", 8): [v - 3 - 0.1 * i for i, v in enumerate(against)],
            ("fif", 64): against,
        }
    )
    overall, cells = verdicts(runs, grows | {"metric": "nll_nats", "better": "lower", "margin": 0})
    assert cells.iloc[0]["latent_dim"] == "2→8" and overall["verdict"] == SUPPORTED, cells.iloc[0].to_dict()


def test_a_data_set_sweeping_one_d_holds_no_growth_cell_the_claim_must_pass():
    """A growth needs two d: a data set with one swept d is a cell no number of seeds could decide, so it is not
    testable and does not hold the claim back; where every data set sweeps one d, the claim is not testable."""
    grows = {"id": "C", "statement": "", "kind": "grows_with_latent_dim", "model": "five", "against": ["vae"]}
    claim = grows | {"metric": "nll_nats", "better": "lower", "margin": 0}
    against = [10.0, 11.0, 12.0, 10.5, 11.5, 12.5]
    growing = {("vae", 2): against, ("vae", 8): against, ("five", 2): against}
    growing[("five", 8)] = [v - 3 - 0.1 * i for i, v in enumerate(against)]
    one_d = runs_table({("vae", 4): against, ("five", 4): [v - 1 for v in against]}, dataset="manifold")
    runs = pd.concat([runs_table(growing), one_d])
    overall, cells = verdicts(runs, claim)
    assert overall["verdict"] == SUPPORTED, (overall.to_dict(), cells.to_dict("records"))
    flat = cells[cells["dataset"] == "manifold"].iloc[0]
    assert flat["verdict"] == NOT_TESTABLE and "only d = 4" in flat["reason"] and "1 not testable" in overall["reason"]
    overall, _ = verdicts(one_d, claim)
    assert overall["verdict"] == NOT_TESTABLE and "only d = 4" in overall["reason"]


def test_a_trend_of_likelihoods_missing_one_sides_runs_at_a_d_says_so():
    """Per-example values asked of no paired seeds (the VAE has no runs at d = 2 yet): a reason, not a crash."""
    grows = {"id": "C", "statement": "", "kind": "grows_with_latent_dim", "model": "five", "against": ["vae"]}
    runs = runs_table({("vae", 8): [10.0] * 3, ("five", 2): [11.0, 12.0, 13.0], ("five", 8): [9.0, 9.5, 8.0]})
    values = {run_dir: np.zeros(5) for run_dir in runs["run_dir"]}
    claim = grows | {"metric": "nll_nats", "better": "lower", "margin": 0}
    table = evaluate_claims(runs, SETTINGS | {"list": [claim]}, SHOWN, per_example=of_runs(values))
    assert table.iloc[1]["verdict"] == INCONCLUSIVE and "0 paired seed(s) over d = 2…8" in table.iloc[1]["reason"]


def test_one_contradicted_cell_makes_the_claim_contradicted():
    runs = runs_table(
        {
            ("five", 2): [10.0, 11.0, 12.5],
            ("vae", 2): [11.0, 12.2, 13.3],
            ("five", 8): [12.0, 13.0, 14.5],
            ("vae", 8): [11.0, 12.2, 13.3],
        }
    )
    overall, cells = verdicts(runs, C1)
    assert list(cells["verdict"]) == [SUPPORTED, CONTRADICTED] and overall["verdict"] == CONTRADICTED
    assert overall["reason"] == "1 of 2 cells supported, 1 contradicted, 0 inconclusive (0 without a test)"


def test_collapse_below_d_growth_with_d_and_equivalence():
    """Counts take the exact sign-flip test: six seeds (smallest p 1/64) can decide at 2.5%, three never can."""
    au = "active_units_eigen"
    runs = runs_table(
        {
            ("vae", 2): [2] * 6,
            ("vae", 16): [9, 10, 8, 9, 11, 10],
            ("five", 2): [2] * 6,
            ("five", 16): [15, 16, 15, 16, 16, 15],
        },
        metric=au,
    )
    below = {
        "id": "C2a",
        "statement": "",
        "kind": "below_latent_dim",
        "model": "vae",
        "metric": au,
        "latent_dims": "largest",
    }
    overall, cells = verdicts(runs, below)
    assert overall["verdict"] == SUPPORTED and cells.iloc[0]["test"] == "bounded (Hoeffding)"
    # margin 0: a count never exceeds d, so one seed below d proves the mean below d (p = 0, no chance involved)
    one_collapses = runs_table({("vae", 16): [16, 16, 15]}, metric=au)
    overall, cells = verdicts(one_collapses, below)
    assert overall["verdict"] == SUPPORTED and cells.iloc[0]["p_support"] == 0
    no_collapse = runs_table({("vae", 16): [16, 16, 16]}, metric=au)  # margin 0: a rare collapse stays possible
    overall, cells = verdicts(no_collapse, below)
    assert overall["verdict"] == INCONCLUSIVE and "cannot be refuted" in cells.iloc[0]["reason"]
    # "more than 4 lost": losses 7, 6, 8 of 16 are not enough with three seeds, whatever the losses' spread
    # (p = exp(−3·KL(9/16 ‖ 12/16)) = 0.42)
    three = runs_table({("vae", 16): [9, 10, 8]}, metric=au)
    overall, cells = verdicts(three, below | {"margin": 4})
    assert overall["verdict"] == INCONCLUSIVE
    assert cells.iloc[0]["p_support"] == pytest.approx(math.exp(-3 * kl(9 / 16, 12 / 16)))
    grows = {
        "id": "C2e",
        "statement": "",
        "kind": "grows_with_latent_dim",
        "model": "five",
        "against": ["vae"],
        "metric": au,
        "better": "higher",
    }
    overall, cells = verdicts(runs, grows)
    assert overall["verdict"] == SUPPORTED and cells.iloc[0]["mean"] == pytest.approx(6.0)
    equivalent = {
        "id": "C4",
        "statement": "",
        "kind": "equivalent",
        "model": "five",
        "against": ["vae"],
        "metric": "nll_nats",
        "margin": 0.5,
    }
    close = runs_table({("five", 4): [10.0, 11.0, 12.0], ("vae", 4): [10.1, 10.9, 12.05]})
    far = runs_table({("five", 4): [10.0, 11.0, 12.0], ("vae", 4): [12.0, 13.1, 13.9]})
    assert verdicts(close, equivalent)[0]["verdict"] == SUPPORTED
    assert verdicts(far, equivalent)[0]["verdict"] == CONTRADICTED


def test_identical_count_differences_never_make_a_zero_width_interval():
    runs = runs_table({("fcvae", 8): [7, 7, 7], ("vae", 8): [8, 8, 8]}, metric="active_units_eigen")
    claim = {
        "id": "C2c",
        "statement": "",
        "kind": "paired",
        "model": "fcvae",
        "against": ["vae"],
        "metric": "active_units_eigen",
        "better": "lower",
    }
    overall, cells = verdicts(runs, claim)
    # −1 ± t(0.975, 2)·√(2/12)/√3: the rounding of two counts, never width 0; the exact test's p is 1/8
    half = 4.302653 * math.sqrt(2 / 12) / math.sqrt(3)
    assert cells.iloc[0]["ci_high"] == pytest.approx(-1 + half, rel=1e-5) and cells.iloc[0]["p_support"] == 1 / 8
    assert overall["verdict"] == INCONCLUSIVE
    six = runs_table({("fcvae", 8): [7] * 6, ("vae", 8): [8] * 6}, metric="active_units_eigen")
    overall, cells = verdicts(six, claim)
    assert overall["verdict"] == SUPPORTED and cells.iloc[0]["ci_low"] < -1 < cells.iloc[0]["ci_high"] < 0


def test_better_by_a_margin_is_contradicted_when_the_whole_interval_lies_short_of_it():
    """Better by 1 nat: differences of −0.5 ± 0.05 show a win, but by less than the margin."""
    runs = runs_table({("five", 4): [10.0, 11.0, 12.0, 13.0, 14.0], ("vae", 4): [10.5, 11.45, 12.55, 13.48, 14.52]})
    assert verdicts(runs, C1 | {"margin": 1.0})[0]["verdict"] == CONTRADICTED
    assert verdicts(runs, C1 | {"margin": 0.0})[0]["verdict"] == SUPPORTED
    higher = C1 | {"better": "higher", "margin": 0.2}  # model − against ≈ −0.5: short of +0.2 on the low side
    overall, cells = verdicts(runs, higher)
    assert overall["verdict"] == CONTRADICTED and cells.iloc[0]["ci_high"] < 0.2
    assert verdicts(runs, higher | {"margin": -1.0})[0]["verdict"] == SUPPORTED  # better than −1 nat


def test_an_equivalence_is_contradicted_by_its_whole_interval_not_its_mean():
    equivalent = {
        "id": "C4",
        "statement": "",
        "kind": "equivalent",
        "model": "five",
        "against": ["vae"],
        "metric": "nll_nats",
        "margin": 0.5,
    }
    straddling = runs_table({("five", 4): [10.0, 11.0, 12.0], ("vae", 4): [9.0, 10.9, 11.0]})  # mean 0.7
    overall, cells = verdicts(straddling, equivalent)
    assert cells.iloc[0]["mean"] > 0.5 and cells.iloc[0]["ci_low"] < 0.5 and overall["verdict"] == INCONCLUSIVE


def test_only_seeds_present_on_both_sides_are_paired():
    runs = runs_table({("five", 4): [10.0, 11.0, 12.5, 100.0], ("vae", 4): [11.0, 12.2, 13.3]})
    cell = verdicts(runs, C1)[1].iloc[0]
    assert cell["n_seeds"] == 3 and cell["mean"] == pytest.approx(-1.0)


def test_a_claim_without_cells_has_a_row_saying_why():
    runs = runs_table({("five", 4): [10.0, 11.0, 12.5], ("vae", 4): [11.0, 12.2, 13.3]})
    overall, cells = verdicts(runs, C1 | {"datasets": ["manifold"]})
    assert overall["verdict"] == "not testable" and "manifold" in overall["reason"] and cells.empty


def test_holm_adjusts_as_the_textbook_example():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def null_rate(draw, cells=18, simulations=1500, seed=0):
    """How often a C1-like claim (better: lower, margin 0) comes out contradicted, and supported, when every
    cell's true difference sits at the boundary 0; `draw(generator)` gives one cell's paired differences."""
    generator = np.random.default_rng(seed)
    outcomes = {CONTRADICTED: 0, SUPPORTED: 0}
    for _ in range(simulations):
        rows = [verdict_row(draw(generator), 0.0, 0.0, "below", "", SETTINGS, "nll_nats") for _ in range(cells)]
        decide_cells(rows, SETTINGS)
        verdict_list = [row["verdict"] for row in rows]
        outcomes[CONTRADICTED] += CONTRADICTED in verdict_list
        outcomes[SUPPORTED] += verdict_list.count(SUPPORTED) == cells
    return {key: value / simulations for key, value in outcomes.items()}


@pytest.mark.parametrize(
    "name, draw, simulations",
    [
        ("continuous, 5 seeds", lambda g: g.normal(0.0, 0.35, 5), 1500),
        ("counts with ties, 6 seeds", lambda g: g.choice([-2.0, -1.0, 0.0, 0.0, 1.0, 2.0], 6), 600),
    ],
)
def test_under_the_null_a_claim_is_contradicted_at_most_at_the_stated_rate(name, draw, simulations):
    """α = 2.5% one-sided. 1,500 tables give a standard error of 0.4% (600: 0.64%), so the bound allows over
    2.5 standard errors of simulation noise above α."""
    rates = null_rate(draw, simulations=simulations)
    assert rates[CONTRADICTED] <= 0.042, (name, rates)
    assert rates[SUPPORTED] <= 0.042, (name, rates)


def test_without_the_holm_step_the_null_contradicts_far_more_often():
    """The old rule (any of 18 cells at 2.5%, no adjustment) on the same null: the simulation can tell."""
    generator = np.random.default_rng(1)
    unadjusted = np.mean(
        [
            any(
                verdict_row(generator.normal(0.0, 0.35, 5), 0.0, 0.0, "below", "", SETTINGS, "nll_nats")["p_contradict"]
                <= 0.025
                for _ in range(18)
            )
            for _ in range(300)
        ]
    )
    assert unadjusted > 0.2, unadjusted


COST_CLAIM = {
    "id": "C3",
    "statement": "cheap",
    "kind": "ratio_at_most",
    "model": "five",
    "against": ["vae"],
    "metric": "epoch_time_s",
    "factor": 3,
}


def test_cost_ratio_and_the_written_report(tmp_path):
    runs = runs_table({("five", 4): [0.25, 0.26, 0.24], ("vae", 4): [0.1, 0.1, 0.1]}, metric="epoch_time_s")
    claim = COST_CLAIM
    assert verdicts(runs, claim)[0]["verdict"] == SUPPORTED
    assert verdicts(runs, claim | {"factor": 2})[0]["verdict"] == CONTRADICTED
    table = evaluate_claims(runs, SETTINGS | {"list": [claim]}, SHOWN)
    summary = write_claims(table, tmp_path / "claims", SETTINGS)
    text = (tmp_path / "claims.md").read_text()
    assert summary.startswith("C3 SUPPORTED") and "95% Student-t interval" in text and "Holm" in text
    assert re.search(r"\|\s+n \(seeds or rounds\)\s+\|", text)  # a step-time cell's n counts timing rounds
    cells = pd.read_csv(tmp_path / "claims.csv")
    assert len(cells) == 2
    # claims.csv keeps the log ratio; claims.md shows it, and its interval, as the geometric mean ratio
    cell = cells[cells["dataset"] != "all"].iloc[0]
    assert cell["mean"] == pytest.approx(math.log(2.5), abs=0.02) and cell["rule"].startswith("log(model / against)")
    ratios = [f"{math.exp(cell[column]):.4g}×" for column in ("mean", "ci_low", "ci_high")]
    assert re.search(r"\|\s+" + r"\s+\|\s+".join(map(re.escape, ratios)) + r"\s+\|", text), text
    assert "model / against < 3 (geometric mean over the pairs)" in text and "log(model / against)" not in text


def test_an_inconclusive_cell_leaves_its_test_and_rule_blank_in_the_report(tmp_path):
    """A cell that no test decides (too few seeds) has no test, no rule and no count of agreeing seeds: claims.md
    leaves them blank, as claims.csv does, not 'nan' or '0/2'."""
    runs = runs_table({("five", 4): [0.25, 0.26], ("vae", 4): [0.1, 0.1]}, metric="epoch_time_s")
    write_claims(evaluate_claims(runs, SETTINGS | {"list": [COST_CLAIM]}, SHOWN), tmp_path / "claims", SETTINGS)
    text = (tmp_path / "claims.md").read_text()
    assert "fewer than min_seeds" in text and "nan" not in text.lower()
    assert not re.search(r"\|\s*\d+/2\s*\|", text), text  # both seeds are slower: no test counted them
    assert pd.read_csv(tmp_path / "claims.csv").get("seeds_agree", pd.Series(dtype=float)).isna().all()


def test_a_pipe_in_a_claims_text_stays_inside_its_markdown_cell(tmp_path):
    """A statement like '|Δ| is small' (or an id with '|') is escaped in claims.md: every row of both tables
    has its table's columns, the claim's text reads back whole."""
    runs = runs_table({("five", 4): [0.25, 0.26, 0.24], ("vae", 4): [0.1, 0.1, 0.1]}, metric="epoch_time_s")
    claim = COST_CLAIM | {"id": "C|3", "statement": "|cost| is at most 3 × the VAE's"}
    write_claims(evaluate_claims(runs, SETTINGS | {"list": [claim]}, SHOWN), tmp_path / "claims", SETTINGS)
    tables = re.findall(r"(?m)(?:^\|.*\|\n)+", (tmp_path / "claims.md").read_text())
    assert len(tables) == 2
    for table in tables:
        rows = [re.split(r"(?<!\\)\|", row)[1:-1] for row in table.splitlines()]
        assert len({len(row) for row in rows}) == 1, table  # no row has a column more than its heading
    first_row = [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", tables[0].splitlines()[2])]
    assert first_row[1:3] == ["C|3", claim["statement"]]


def test_interval_of_one_value_is_unbounded():
    assert Interval.of(pd.Series([1.0]).to_numpy(), 0.95).low == -math.inf


def test_every_likelihood_label_says_which_sigma():
    runs = runs_table({("five", 4): [10.0, 11.0, 12.5], ("vae", 4): [11.0, 12.2, 13.3]})
    runs["sigma_policy"] = "fitted"
    cell = verdicts(runs, C1)[1].iloc[0]
    assert cell["model"] == "five (K=1, σ fitted)" and cell["against"] == "vae (σ fitted)"


def test_a_margin_per_data_dimension_means_the_same_at_every_d():
    """0.1 bits/dim is 0.1 · D · ln 2 nats: 0.69 nats at D = 10, 4.4 at D = 64. A win of 0.5 nats is short of
    the first and, as an equivalence, inside the second."""
    better = C1 | {"margin_bits_per_dim": 0.1, "margin_reason": "test"}
    better.pop("margin")
    wins = {("five", 4): [10.0, 11.0, 12.0, 13.0, 14.0], ("vae", 4): [10.5, 11.45, 12.55, 13.48, 14.52]}
    small = runs_table(wins).assign(data_dim=10)
    overall, cells = verdicts(small, better)
    assert overall["verdict"] == CONTRADICTED and "0.1 bits/dim × D = 10" in cells.iloc[0]["rule"]
    assert "margin: test" in cells.iloc[0]["rule"]
    equivalent = {
        "id": "C4",
        "statement": "",
        "kind": "equivalent",
        "model": "five",
        "against": ["vae"],
        "metric": "nll_nats",
        "margin_bits_per_dim": 0.1,
    }
    assert verdicts(runs_table(wins).assign(data_dim=64), equivalent)[0]["verdict"] == SUPPORTED
    assert verdicts(small, equivalent)[0]["verdict"] == SUPPORTED  # |−0.5| < 0.69 as well
    unknown = verdicts(runs_table(wins), equivalent)[1].iloc[0]  # no data_dim column: older eval.json files
    assert unknown["verdict"] == INCONCLUSIVE and "data dimension D" in unknown["reason"]


def step_times_table(ratio: float, rounds: int = 10, noise: float = 0.02, seed: int = 0) -> pd.DataFrame:
    """A side-by-side timing (five time-steps): per round, the VAE's step and FIVE's at `ratio` times it, both
    disturbed by the same round's load and each by its own noise."""
    generator = np.random.default_rng(seed)
    rows = []
    for round_index in range(rounds):
        load = generator.uniform(1.0, 3.0)  # a busy machine slows both sides of the round alike
        for model, factor in (("vae", 1.0), ("five", ratio)):
            rows.append(
                {
                    "dataset": "digits",
                    "model": model,
                    "latent_dim": 4,
                    "probes": SHOWN.get(model, 0),
                    "round": round_index,
                    "step_time_s": 0.01 * factor * load * generator.lognormal(0, noise),
                }
            )
    return pd.DataFrame(rows)


C3 = {
    "id": "C3",
    "statement": "cheap",
    "kind": "ratio_at_most",
    "model": "five",
    "against": ["vae"],
    "metric": "step_time_s",
    "factor": 3,
}


def test_cost_claim_pairs_the_rounds_of_a_side_by_side_timing():
    """A machine load that changes between rounds by up to 3× cancels in the paired ratio: FIVE at 2.5× the VAE
    is decided 'at most 3×' (and not 'at most 2×') from 10 rounds; unpaired, the load's spread would hide it."""
    runs = runs_table({("five", 4): [1.0, 1.0, 1.0], ("vae", 4): [1.0, 1.0, 1.0]})  # no step times in runs
    table = evaluate_claims(runs, SETTINGS | {"list": [C3]}, SHOWN, step_times_table(2.5))
    overall = table[table["dataset"] == "all"].iloc[0]
    cell = table[table["dataset"] != "all"].iloc[0]
    assert overall["verdict"] == SUPPORTED and cell["n_seeds"] == 10, cell.to_dict()
    assert math.log(2.4) < cell["mean"] < math.log(2.6)
    table = evaluate_claims(runs, SETTINGS | {"list": [C3 | {"factor": 2}]}, SHOWN, step_times_table(2.5))
    assert table[table["dataset"] == "all"].iloc[0]["verdict"] == CONTRADICTED


def test_cost_claim_without_step_times_is_not_testable_and_says_why():
    runs = runs_table({("five", 4): [1.0, 1.0, 1.0], ("vae", 4): [1.0, 1.0, 1.0]})
    overall = evaluate_claims(runs, SETTINGS | {"list": [C3]}, SHOWN).iloc[0]
    assert overall["verdict"] == NOT_TESTABLE and "no step times were measured" in overall["reason"]


def test_cost_claim_at_its_boundary_is_rarely_decided():
    """FIVE at exactly 3× the VAE: 'contradicted' (or 'supported') in at most α of 400 timings."""
    decided = [
        evaluate_claims(
            runs_table({("vae", 4): [1.0]}), SETTINGS | {"list": [C3]}, SHOWN, step_times_table(3.0, seed=seed)
        ).iloc[0]["verdict"]
        for seed in range(400)
    ]
    assert decided.count(CONTRADICTED) / 400 <= 0.045 and decided.count(SUPPORTED) / 400 <= 0.045


def of_runs(values: dict):
    """per_example for evaluate_claims from {run_dir: values of the claim's metric}."""
    return lambda run_dir, metric: values.get(run_dir)


def null_tables_of_a_drawn_test_set(
    tables: int, with_test_set: bool, claim: dict = C1, dims=(4,), seeds: int = 5, examples: int = 200
) -> list[str]:
    """Verdicts of `claim` where FIVE and the VAE are equally good on the data distribution at every d, but each
    table's test set is a fresh draw of `examples` whose per-example NLL differences have spread 1 nat (drawn
    apart at each d: the worst case for a trend): the seeds (spread 0.02) share that test set, so its luck moves
    every seed's difference alike. D = 64, 256 levels (bits/dim = NLL/(D·ln 2) + 8)."""
    generator = np.random.default_rng(7)
    verdicts_seen = []
    for _ in range(tables):
        luck = {d: generator.normal(0.0, 1.0, examples) for d in dims}  # which examples this test set holds
        rows, values = [], {}
        for d, seed in itertools.product(dims, range(seeds)):
            offset = generator.normal(0.0, 0.02)
            noise = generator.normal(0.0, 0.1, examples)
            for model, nll in (("five", 5.0 + offset + luck[d] + noise), ("vae", np.full(examples, 5.0))):
                run_dir = f"results/digits/{model}/d{d}/s{seed}"
                values[run_dir] = nll
                rows.append(
                    {
                        "dataset": "digits",
                        "model": model,
                        "latent_dim": d,
                        "probes": SHOWN.get(model, 0),
                        "seed": seed,
                        "status": "complete",
                        "run_dir": run_dir,
                        "data_dim": 64,
                        "nll_nats": float(nll.mean()),
                        "bits_per_dim": float(nll.mean()) / (64 * math.log(2)) + 8,
                        "posterior_covariance_error": float(nll.mean()),  # any per-example metric's part alike
                    }
                )
        table = evaluate_claims(
            pd.DataFrame(rows),
            SETTINGS | {"list": [claim]},
            SHOWN,
            per_example=of_runs(values) if with_test_set else None,
        )
        verdicts_seen.append(table.iloc[0]["verdict"])
    return verdicts_seen


def test_nll_intervals_include_the_test_sets_draw():
    """Null simulation: with the test set's part of the variance, a claim with no true difference is decided
    either way in at most α of 300 tables; over seeds alone it is decided in most of them (the test set's
    luck, shared by every seed, looks like a real difference)."""
    with_test_set = null_tables_of_a_drawn_test_set(300, True)
    assert with_test_set.count(SUPPORTED) / 300 <= 0.045 and with_test_set.count(CONTRADICTED) / 300 <= 0.045
    seeds_only = null_tables_of_a_drawn_test_set(100, False)
    assert (seeds_only.count(SUPPORTED) + seeds_only.count(CONTRADICTED)) / 100 > 0.5


@pytest.mark.parametrize(
    "claim, dims",
    [
        (C1 | {"metric": "bits_per_dim"}, (4,)),  # NLL/(D·ln 2) + a constant: the same draw, in other units
        (C1 | {"metric": "posterior_covariance_error"}, (4,)),  # C5's metric, on the manifold's first examples
        (
            {"id": "C2e", "statement": "", "kind": "grows_with_latent_dim", "model": "five", "against": ["vae"]}
            | {"metric": "nll_nats", "better": "lower", "margin": 0},
            (2, 8),
        ),
    ],
)
def test_the_test_sets_draw_is_in_bits_per_dim_posterior_error_and_trend_claims_too(claim, dims):
    """The same null simulation for a bits/dim claim, a posterior-error claim and a trend of the NLL advantage
    over d: decided in at most
    α of 300 tables with the test set's part; over seeds alone (what these claims had) in most of 100."""
    with_test_set = null_tables_of_a_drawn_test_set(300, True, claim, dims)
    assert with_test_set.count(SUPPORTED) / 300 <= 0.045 and with_test_set.count(CONTRADICTED) / 300 <= 0.045
    seeds_only = null_tables_of_a_drawn_test_set(100, False, claim, dims)
    assert (seeds_only.count(SUPPORTED) + seeds_only.count(CONTRADICTED)) / 100 > 0.5


def test_a_bits_per_dim_interval_is_the_nll_interval_in_bits_per_dim():
    """bits/dim = NLL/(D·ln 2) + log₂ L per run and per example, so its cell is the NLL cell in those units."""
    generator = np.random.default_rng(8)
    runs = runs_table({("five", 4): [10.0, 11.0, 12.5], ("vae", 4): [11.0, 12.2, 13.3]})
    values = {run_dir: generator.normal(nll, 3.0, 50) for run_dir, nll in zip(runs["run_dir"], runs["nll_nats"])}
    runs["nll_nats"] = [values[run_dir].mean() for run_dir in runs["run_dir"]]
    runs = runs.assign(data_dim=64, bits_per_dim=runs["nll_nats"] / (64 * math.log(2)) + 8)
    nats, bits = (
        evaluate_claims(runs, SETTINGS | {"list": [C1 | {"metric": metric}]}, SHOWN, per_example=of_runs(values)).iloc[
            1
        ]
        for metric in ("nll_nats", "bits_per_dim")
    )
    assert bits["test"] == nats["test"] == "t, seeds + test set"
    for key in ("mean", "ci_low", "ci_high"):
        assert bits[key] == pytest.approx(nats[key] / (64 * math.log(2)), rel=1e-9)
    assert bits["p_support"] == pytest.approx(nats["p_support"], rel=1e-9)


def test_beyond_16_seeds_tied_differences_take_the_sign_flip_test_over_drawn_patterns():
    """20 seeds of differences −1, 0, +1 (a continuous metric whose values tie): Student's t decided such
    tables in 2.9% at the boundary, above α. The drawn-pattern sign-flip p-value equals the exact one, known
    here in closed form (a sum of k random signs is 2·Binomial(k, ½) − k), within the draw's spread."""
    from scipy import stats

    from five.sweep.claims import sign_flip_pvalue

    diffs = np.array([1.0] * 9 + [-1.0] * 4 + [0.0] * 7)
    nonzero = 13
    exact = float(stats.binom.sf((9 - 4 + nonzero) / 2 - 1, nonzero, 0.5))  # P(sum ≥ 5)
    assert sign_flip_pvalue(diffs, 0.0, "above") == pytest.approx(exact, abs=4 * math.sqrt(exact / 2**16))
    runs = runs_table({("five", 4): list(10.0 + diffs), ("vae", 4): [10.0] * 20}, metric="elbo_nats")
    cell = verdicts(runs, C1 | {"metric": "elbo_nats"})[1].iloc[0]
    assert cell["test"] == "sign-flip" and cell["p_contradict"] == sign_flip_pvalue(diffs, 0.0, "above")


def test_a_cell_where_the_claims_model_has_no_runs_says_so():
    """The cells' d come from every model of the data set: where the claim's own model has none yet (unfinished
    runs), the cell names that, not "0 paired seeds"."""
    runs = runs_table({("five", 4): [10.0, 11.0, 12.5], ("vae", 4): [11.0, 12.2, 13.3], ("vae", 8): [9.0] * 3})
    overall, cells = verdicts(runs, C1 | {"latent_dims": "largest"})
    assert overall["verdict"] == INCONCLUSIVE and cells.iloc[0]["reason"] == "no runs of five at d = 8 in runs.csv"


def test_a_run_without_per_example_values_is_not_decided_over_seeds_alone():
    """Seeds alone would leave out the test set's draw, which the stated error rate needs: the cell is
    inconclusive and names the run and how to evaluate it again."""
    runs = runs_table({("five", 4): [10.0, 11.0, 12.5], ("vae", 4): [11.0, 12.2, 13.3]})
    values = {run_dir: np.zeros(10) for run_dir in runs["run_dir"] if "/vae/" in run_dir}  # FIVE's are missing
    table = evaluate_claims(runs, SETTINGS | {"list": [C1]}, SHOWN, per_example=of_runs(values))
    assert table.iloc[1]["verdict"] == INCONCLUSIVE
    assert "five/d4/s0 has no per-example nll_nats" in table.iloc[1]["reason"]
    assert "--forcerun evaluate" in table.iloc[1]["reason"]


def test_runs_evaluated_on_different_test_sets_are_not_paired_example_by_example():
    """Per-example values pair examples only within one test set: lengths that differ between runs (another
    split, another data version) or values that are not finite make the cell inconclusive, saying why, not a
    crash or a mispairing."""
    runs = runs_table({("five", 4): [10.0, 11.0, 12.5], ("vae", 4): [11.0, 12.2, 13.3]})
    values = {run_dir: np.zeros(10 if "/s0" in run_dir else 12) for run_dir in runs["run_dir"]}
    table = evaluate_claims(runs, SETTINGS | {"list": [C1]}, SHOWN, per_example=of_runs(values))
    assert table.iloc[1]["verdict"] == INCONCLUSIVE and "test sets of different sizes" in table.iloc[1]["reason"]
    values = {run_dir: np.full(10, np.nan) for run_dir in runs["run_dir"]}
    table = evaluate_claims(runs, SETTINGS | {"list": [C1]}, SHOWN, per_example=of_runs(values))
    assert table.iloc[1]["verdict"] == INCONCLUSIVE and "not all finite" in table.iloc[1]["reason"]


BELOW = {
    "id": "C2a",
    "statement": "",
    "kind": "below_latent_dim",
    "model": "vae",
    "metric": "active_units_eigen",
    "latent_dims": "largest",
    "margin": 0,
}


@pytest.mark.parametrize("seeds", [3, 6])
def test_a_rare_collapse_is_never_contradicted_by_seeds_that_happen_to_keep_all_d(seeds):
    """The claim holds (each seed loses a direction with probability 0.1, so fewer than d on average), yet
    most tables have every seed at d (0.9³ = 73% with 3 seeds): 'contradicted' there would be wrong at that
    rate. 400 tables; at most α."""
    generator = np.random.default_rng(3)
    decided = [
        verdicts(
            runs_table({("vae", 8): list(8 - generator.binomial(1, 0.1, seeds))}, metric="active_units_eigen"), BELOW
        )[0]["verdict"]
        for _ in range(400)
    ]
    assert decided.count(CONTRADICTED) / 400 <= 0.045, decided.count(CONTRADICTED)


def kl(p, q):
    """KL between Bernoulli(p) and Bernoulli(q), written out."""
    return sum(a * math.log(a / b) for a, b in ((p, q), (1 - p, 1 - q)) if a > 0)


def test_no_collapse_in_enough_seeds_contradicts_a_collapse_by_a_margin():
    """'At least one direction lost on average' (margin 1, d = 8) against seeds that all keep d. The claim holds
    for a collapse of every direction in one seed of eight, under which n seeds all keep d with chance (7/8)ⁿ:
    6 seeds (0.45) cannot refute it, 28 (0.024 < α) can; the p-value is that chance exactly."""
    runs = runs_table({("vae", 8): [8] * 6}, metric="active_units_eigen")
    overall, cells = verdicts(runs, BELOW | {"margin": 1})
    assert overall["verdict"] == INCONCLUSIVE and cells.iloc[0]["p_contradict"] == pytest.approx((7 / 8) ** 6)
    runs = runs_table({("vae", 8): [8] * 28}, metric="active_units_eigen")
    overall, cells = verdicts(runs, BELOW | {"margin": 1})
    assert overall["verdict"] == CONTRADICTED and cells.iloc[0]["p_contradict"] == pytest.approx((7 / 8) ** 28)


@pytest.mark.parametrize(
    "seeds, collapse, claimed_margin",
    [
        (6, {0: 0.9, 10: 0.1}, 1),  # rare collapse: most seeds at d = 16 (look "contradicted"), mean loss exactly 1
        (20, {0: 0.9, 10: 0.1}, 1),  # beyond the exact tests' 16 seeds
        (6, {0: 0.1, 10: 0.9}, 9),  # its mirror: most seeds lose 10 (look "supported"), mean loss exactly 9
        (10, {1: 0.5, 3: 0.5}, 2),  # symmetric, as the old test assumed
    ],
)
def test_a_count_at_its_boundary_is_decided_in_at_most_alpha_of_tables_however_skewed(seeds, collapse, claimed_margin):
    """below_latent_dim at the boundary (mean count exactly d − margin) with skewed counts: the sign-flip test
    (symmetry) called the rare collapse contradicted in 54% of 6-seed tables, and Student's t beyond 16 seeds
    in 13%. 400 tables per case; each verdict at most α (2.5%) plus the simulation's spread."""
    generator, losses = np.random.default_rng(5), np.array(list(collapse))
    assert sum(loss * chance for loss, chance in collapse.items()) == pytest.approx(claimed_margin)
    decided = [
        verdicts(
            runs_table(
                {("vae", 16): list(16 - generator.choice(losses, seeds, p=list(collapse.values())))},
                metric="active_units_eigen",
            ),
            BELOW | {"margin": claimed_margin},
        )[0]["verdict"]
        for _ in range(400)
    ]
    assert decided.count(CONTRADICTED) / 400 <= 0.045 and decided.count(SUPPORTED) / 400 <= 0.045, (
        decided.count(CONTRADICTED),
        decided.count(SUPPORTED),
    )


def test_a_counts_interval_covers_its_mean_however_skewed():
    """The shown interval of a below_latent_dim cell covers the true mean count − d in at least 95% of tables,
    for a rare collapse too (the t interval covered it in 28% at 3 seeds). 1,000 tables of 3 and 10 seeds."""
    generator = np.random.default_rng(6)
    for seeds in (3, 10):
        covered = 0
        for _ in range(1000):
            counts = 16 - generator.choice([0, 10], seeds, p=[0.9, 0.1])
            cell = verdicts(
                runs_table({("vae", 16): list(counts)}, metric="active_units_eigen"), BELOW | {"margin": 1}
            )[1]
            covered += cell.iloc[0]["ci_low"] <= -1 <= cell.iloc[0]["ci_high"]
        assert covered / 1000 >= 0.95, (seeds, covered)


@pytest.mark.parametrize("doubled_model", ["five", "vae"])
def test_a_seed_listed_twice_is_not_counted_twice(doubled_model):
    """Three seeds each listed twice (on either side) would pair into more 'seeds' than there are and a smaller
    p-value: the cell says why instead."""
    runs = runs_table({("five", 4): [10.0, 11.0, 12.5], ("vae", 4): [11.0, 12.2, 13.3]})
    doubled = pd.concat([runs, runs[runs["model"] == doubled_model]])
    overall, cells = verdicts(doubled, C1)
    assert overall["verdict"] == INCONCLUSIVE, cells.iloc[0].to_dict()
    assert f"seed 0, 1, 2 listed more than once among {doubled_model}'s values" in cells.iloc[0]["reason"]


def test_a_timing_round_listed_twice_is_not_counted_twice():
    times = step_times_table(2.5)
    doubled = pd.concat([times, times[times["model"] == "five"]])
    runs = runs_table({("five", 4): [1.0, 1.0, 1.0], ("vae", 4): [1.0, 1.0, 1.0]})
    cell = evaluate_claims(runs, SETTINGS | {"list": [C3]}, SHOWN, doubled).iloc[1]
    assert cell["verdict"] == INCONCLUSIVE and "round 0, 1, 2, 3" in cell["reason"], cell.to_dict()


@pytest.mark.parametrize("model_values", [[0.25, 0.0, 0.24], [0.25, -0.1, 0.24], [-0.25, -0.26, -0.24]])
def test_a_ratio_of_a_value_that_is_not_positive_is_inconclusive_saying_why(model_values):
    """A zero or negative value has no log ratio; two negative ones would have a positive ratio that means
    nothing (an NLL is negative on continuous data)."""
    against = [-0.1] * 3 if model_values[0] < 0 else [0.1] * 3
    runs = runs_table({("five", 4): model_values, ("vae", 4): against}, metric="epoch_time_s")
    claim = {"id": "C3", "statement": "", "kind": "ratio_at_most", "model": "five", "against": ["vae"]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        overall, cells = verdicts(runs, claim | {"metric": "epoch_time_s", "factor": 3})
    assert overall["verdict"] == INCONCLUSIVE and "not a finite positive number in every run" in cells.iloc[0]["reason"]


def test_a_margin_whose_sums_overflow_never_decides_a_count_claim():
    """A margin of 1e308 made the sign-flip test's sums infinite and its p-value 0: an equivalence 'supported'
    from 2 seeds, where 2 seeds cannot decide a count claim at all (the smallest p is 1/4). The schema bounds
    margins; the test itself answers p = 1 to sums beyond float64."""
    runs = runs_table({("five", 8): [7, 7], ("vae", 8): [7, 7]}, metric="active_units")
    claim = {"id": "EQ", "statement": "", "kind": "equivalent", "model": "five", "against": ["vae"]}
    claim |= {"metric": "active_units", "margin": 1e308}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        table = evaluate_claims(runs, {"min_seeds": 2, "confidence": 0.95, "list": [claim]}, SHOWN)
    cell = table[table["dataset"] != "all"].iloc[0]
    assert table["verdict"].tolist() == [INCONCLUSIVE, INCONCLUSIVE] and cell["p_support"] == 1.0


def test_the_test_sets_part_is_the_variance_of_a_mean_over_its_examples():
    """The test set's part of a paired mean's variance: the variance over the N examples of the seed-averaged
    per-example difference, over N (the variance of a mean of N draws), not that variance itself."""
    from five.sweep.claims import test_set_variance

    rng = np.random.default_rng(0)
    differences = pd.DataFrame(rng.normal(-0.5, 2.0, size=(3, 500)))  # seeds × test examples
    per_example = differences.to_numpy().mean(axis=0)
    assert test_set_variance(differences) == pytest.approx(per_example.var(ddof=1) / 500, rel=1e-12)
    assert test_set_variance(differences) == pytest.approx(4 / 3 / 500, rel=0.15)  # σ² of a 3-seed mean, over N


def test_an_equivalence_is_false_on_either_side_at_twice_the_smaller_one_sided_p():
    """`inside` [low, high] holds by two one-sided tests (the larger p) and is false below low or above high:
    Bonferroni over the two sides, 2 × the smaller p."""
    from five.sweep.claims import cell_pvalues, t_pvalue

    diffs = np.array([1.30, 1.25, 1.41, 1.18, 1.35])
    holds, false = cell_pvalues(diffs, -1.0, 1.0, "inside", exact=False)
    below, above = t_pvalue(diffs, -1.0, "below"), t_pvalue(diffs, 1.0, "above")
    assert false == pytest.approx(min(1.0, 2 * min(below, above))) and false == pytest.approx(2 * above)
    assert holds == pytest.approx(max(t_pvalue(diffs, -1.0, "above"), t_pvalue(diffs, 1.0, "below")))
