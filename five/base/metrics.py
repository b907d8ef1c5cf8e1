"""The names of the metrics eval.json holds: one list for the evaluation that writes them and the tables that read
them (torch-free)."""

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
