"""The names of the metrics eval.json holds: one list for the evaluation that writes them and the tables that read
them (torch-free), the rule that counts informative directions (the evaluation and the tables apply it), and
the check of an eval.json's values before the tables, claims or MLflow read them."""

import math
from pathlib import Path

from five.base.config import short_integer
from five.base.errors import FiveError
from five.base.files import EVALUATE_AGAIN_ADVICE, RECORD_SIZE_LIMIT, read_json

SPLITS = ("train", "validation", "test")  # the arrays a data set may hold
TABLED_SPLIT = "test"  # the split the workflow evaluates (five evaluate's default) and its tables report

# A test pass's numbers (spec §2–3); a diverged run's eval.json has each of them, and n_examples, as null.
TEST_METRICS = (
    "nll_nats",
    "nll_standard_error",
    "bits_per_dim",
    "elbo_nats",
    "ess_mean",
    "recon_mse",
    "active_units",
    "active_units_eigen",
    "informative_directions",
    "rate_nats",
)

# What the runs table carries of each eval.json: the test metrics, the manifold's posterior metrics, the σ the
# likelihood was evaluated at (and the model's own), and how the run was evaluated.
RESULT_COLUMNS = (
    *TEST_METRICS,
    "posterior_covariance_error",
    "true_nll_nats",
    "sigma",
    "sigma_policy",
    "sigma_own",
    "nll_nats_own_sigma",
    "bits_per_dim_own_sigma",
    "proposal",
    "n_examples",
    "importance_samples",
    "model_selection",
    "checkpoint_epoch",
    "data_dim",
)

# §3: a direction is informative above 0.5 nats, i.e. λ > e: the spread of the posterior means over the data
# exceeds e − 1 ≈ 1.7 times the average posterior variance. A direction the model leaves to the data's noise
# with mean variance equal to its posterior variance (λ = 2) carries ½·log 2 ≈ 0.35 nats: not informative,
# though "active" by Burda's count. The count's threshold is raised for small test sets (information_threshold).
INFORMATION_THRESHOLD = 0.5


def information_threshold(latent_dim: int, examples: int) -> float:
    """The information a direction must carry to be counted, for d directions estimated from N test examples:
    INFORMATION_THRESHOLD's ratio of mean to posterior variance, e^{2t} − 1, times (1 + √(d/N))², where sampling
    puts the largest of d sample ratios whose true value is common to all (Marchenko–Pastur's edge). Without it
    a small test set makes noise directions informative: at d = 64, N = 360 (digits), d directions that each
    carry ½·log 2 nats show a largest sample ratio of about 2, above e − 1. It also leaves out real directions
    just above 0.5 nats (up to 0.68 nats at d = 32, N = 360): the count errs towards fewer."""
    edge = (1 + math.sqrt(latent_dim / examples)) ** 2
    return 0.5 * math.log1p(math.expm1(2 * INFORMATION_THRESHOLD) * edge)


def informative_count(information_per_direction: list[float], examples: int) -> int:
    """How many directions carry more than information_threshold nats (eval.json's per-direction values)."""
    threshold = information_threshold(len(information_per_direction), examples)
    return sum(value > threshold for value in information_per_direction)


# eval.json's numbers besides TEST_METRICS that the tables, claims or MLflow read
OTHER_NUMBERS = (
    "n_examples",
    "posterior_covariance_error",
    "true_nll_nats",
    "sigma",
    "sigma_own",
    "nll_nats_own_sigma",
    "bits_per_dim_own_sigma",
    "information_threshold_nats",
)
COUNT_METRICS = ("active_units", "active_units_eigen", "informative_directions")  # whole numbers in 0..d
# The metrics whose value per test example eval.json keeps (their mean is the metric), and the list that holds
# them: the claims pair two models example by example, so that their intervals carry the test set's draw.
PER_EXAMPLE_LISTS = {
    "nll_nats": "log_likelihood_per_example",  # log p(x): the NLL's values are minus these
    "elbo_nats": "elbo_per_example",
    "ess_mean": "ess_per_example",
    "posterior_covariance_error": "posterior_covariance_error_per_example",  # the manifold's first examples
}
NUMBER_LISTS = ("information_per_direction", *PER_EXAMPLE_LISTS.values())


def per_example_values(evaluation: dict, metric: str) -> list[float] | None:
    """An eval.json's values of `metric` per test example (PER_EXAMPLE_LISTS), None where it lacks them."""
    values = evaluation.get(PER_EXAMPLE_LISTS[metric])
    return None if values is None else [-value for value in values] if metric == "nll_nats" else values


def read_evaluation(path: Path) -> dict:
    """A run's eval.json, refused in one line where a value the tables, claims or MLflow read from it is not as
    five writes it (a file edited or copied in by hand): a number that is no finite number, a count outside
    0..d, no NLL, no bits/dim for discrete data. A diverged run's eval.json holds null metrics."""
    evaluation = read_json(path)
    problem = evaluation_problem(evaluation)
    if problem is not None:
        raise FiveError(f"{path} is damaged: {problem}; {EVALUATE_AGAIN_ADVICE}")
    return evaluation


def is_evaluation_file(path: Path) -> bool:
    """Whether `path` holds an evaluation as five writes one (a damaged one too): a JSON object with the run's
    config and an NLL entry. Only such a file is replaced by a new evaluation."""
    try:
        if not path.is_file() or path.stat().st_size > RECORD_SIZE_LIMIT:
            return False
        return {"config", "nll_nats"} <= read_json(path).keys()
    except (OSError, FiveError):
        return False


def evaluation_problem(evaluation: dict) -> str | None:
    """What in an eval.json is not as five writes it, or None."""
    config, status = evaluation.get("config", {}), evaluation.get("status", "complete")
    if not isinstance(config, dict) or status not in ("complete", "diverged"):
        return "its config or status is not as five writes it"
    if status == "diverged":
        return None
    for key, value in evaluation.items():  # every number, as MLflow logs each
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not finite_number(value):
            return f"{key} is {shown(value)}, not a finite number"
    for key in (*TEST_METRICS, *OTHER_NUMBERS):
        value = evaluation.get(key)
        if (value is not None or key == "nll_nats") and not finite_number(value):
            return f"{key} is {shown(value)}, not a finite number"
    if evaluation.get("n_examples") is not None and not (
        evaluation["n_examples"] == int(evaluation["n_examples"]) >= 1
    ):
        return f"n_examples is {evaluation['n_examples']!r}, not a number of test examples"
    if evaluation.get("discrete_levels") is not None and evaluation.get("bits_per_dim") is None:
        return "bits_per_dim is missing, though the data are discrete"
    latent_dim = config.get("latent_dim") if finite_number(config.get("latent_dim")) else math.inf
    for key in COUNT_METRICS:
        value = evaluation.get(key)
        if value is not None and (value != int(value) or not 0 <= value <= latent_dim):
            return f"{key} is {value!r}, not a count of directions 0..{latent_dim}"
    for key in NUMBER_LISTS:
        values = evaluation.get(key)
        if values is not None and not (isinstance(values, list) and all(map(finite_number, values))):
            return f"{key} is not a list of finite numbers"
    return mean_problem(evaluation)


PER_EXAMPLE_AGREEMENT = 1e-5  # relative: a metric and its per-example values' mean agree far closer (≤ 2e-7 seen)


def mean_problem(evaluation: dict) -> str | None:
    """A metric that is not the mean of its per-example values (PER_EXAMPLE_LISTS): one of them was changed."""
    for metric in PER_EXAMPLE_LISTS:
        value, values = evaluation.get(metric), per_example_values(evaluation, metric)
        if value is None or not values:
            continue
        mean = math.fsum(values) / len(values)
        if abs(mean - value) > PER_EXAMPLE_AGREEMENT * (1 + abs(value)):
            return (
                f"{metric} is {value:.6g}, but its values per example ({PER_EXAMPLE_LISTS[metric]}) average {mean:.6g}"
            )
    return None


def finite_number(value) -> bool:
    """A number that float32 or float64 arithmetic can take: no bool, NaN, infinity or integer beyond floats."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer of more than 308 digits
        return False


def shown(value) -> str:
    """A value as a message shows it: an integer shortened (short_integer), anything else cut to 40 characters."""
    return short_integer(value) if isinstance(value, int) and not isinstance(value, bool) else repr(value)[:40]
