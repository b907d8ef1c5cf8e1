"""Every malformed workflow config stops the dry run with one line naming the key, no traceback, before any
job is planned (issue 11). Table-driven; the dry runs run a few at a time."""

import copy
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE = {
    "experiment": "bad",
    "seeds": [0],
    "models": {"vae": {}, "fcvae": {}, "fif": {"probes": [1]}, "five": {"probes": [1, 2]}},
    "datasets": {"digits": {"latent_dims": [2, 4], "epochs": 2}, "manifold": {"latent_dims": [2], "epochs": 1}},
}


def edit(path: str, value=None, delete=False):
    """A mutation of BASE setting (or deleting) the value at a dotted path."""
    def apply(config):
        *parents, last = path.split(".")
        node = config
        for part in parents:
            node = node[part]
        if delete:
            del node[last]
        else:
            node[last] = value
        return config
    return apply


def claim(**changes):
    entry = {"id": "C1", "statement": "s", "kind": "paired", "model": "five", "against": ["vae"],
             "metric": "nll_nats"} | changes
    return edit("claims", {"list": [{k: v for k, v in entry.items() if v is not None}]})


# (id, mutation of BASE or raw YAML text, what the one line must contain)
CASES = [
    ("epochs float", edit("datasets.digits.epochs", 30.0), "datasets.digits.epochs: 30.0 is not of type 'integer'"),
    ("latent dim float", edit("datasets.digits.latent_dims", [2.0, 4]), "datasets.digits.latent_dims.0"),
    ("epochs bool", edit("datasets.digits.epochs", True), "datasets.digits.epochs"),
    ("epochs zero", edit("datasets.digits.epochs", 0), "datasets.digits.epochs"),
    ("hidden width fraction", edit("datasets.digits.hidden_width", 12.5), "datasets.digits.hidden_width"),
    ("typo key", edit("datasets.digits.epochz", 3), "'epochz' was unexpected"),
    ("unknown model", edit("models.vaee", {}), "'vaee' was unexpected"),
    ("unknown dataset", edit("datasets.svhn", {"latent_dims": [2], "epochs": 1}), "'svhn' was unexpected"),
    ("no datasets", edit("datasets", delete=True), "'datasets' is a required property"),
    ("no models", edit("models", {}), "invalid config at models"),
    ("seeds empty", edit("seeds", []), "invalid config at seeds"),
    ("seed negative", edit("seeds", [-1]), "invalid config at seeds.0"),
    ("seeds repeated", edit("seeds", [0, 0]), "invalid config at seeds"),
    ("latent dims empty", edit("datasets.digits.latent_dims", []), "datasets.digits.latent_dims"),
    ("lr zero", edit("datasets.digits.lr", 0), "datasets.digits.lr"),
    ("lr text", edit("datasets.digits.lr", "fast"), "datasets.digits.lr"),
    ("log sigma lr negative", edit("datasets.digits.log_sigma_lr", -1), "datasets.digits.log_sigma_lr"),
    ("batch size zero", edit("datasets.digits.batch_size", 0), "datasets.digits.batch_size"),
    ("threads zero", edit("datasets.digits.threads", 0), "datasets.digits.threads"),
    ("importance samples zero", edit("datasets.digits.importance_samples", 0), "datasets.digits.importance_samples"),
    ("probes zero", edit("models.five.probes", [0]), "models.five.probes.0"),
    ("probes above d", edit("models.five.probes", [1, 8]), "models.five.probes has K=8 > latent dim 2"),
    ("device gpu", edit("device", "gpu"), "invalid config at device"),
    ("model selection", edit("model_selection", "worst"), "invalid config at model_selection"),
    ("sigma policy", edit("sigma", "guess"), "invalid config at sigma"),
    ("experiment with space", edit("experiment", "my exp"), "invalid config at experiment"),
    ("runtime zero", edit("datasets.digits.resources", {"train": {"runtime": 0}}),
     "datasets.digits.resources.train.runtime"),
    ("table probes not swept", edit("table_probes", {"five": 3}),
     "table_probes.five = 3 is not a swept budget of models.five.probes"),
    ("table probes of absent model", lambda c: edit("table_probes", {"fif": 1})(edit("models.fif", delete=True)(c)),
     "table_probes.fif is set but fif is not in models"),
    ("conv on flat data", edit("datasets.digits.architecture", "conv"), "datasets.digits.architecture = conv"),
    ("d > D for five", edit("datasets.manifold.latent_dims", [2, 12]), "datasets.manifold.latent_dims [12] exceed D = 10"),
    ("claims confidence", edit("claims", {"confidence": 1.5}), "invalid config at claims.confidence"),
    ("claims min seeds", edit("claims", {"min_seeds": 1}), "invalid config at claims.min_seeds"),
    ("claim kind", claim(kind="vibes"), "invalid config at claims.list.0.kind"),
    ("claim without metric", claim(metric=None), "'metric' is a required property"),
    ("claim without against", claim(against=None), "claims.list.0 (C1): kind paired compares two sides"),
    ("claim unknown metric", claim(metric="accuracy"), "invalid config at claims.list.0.metric"),
    ("duplicated key", "experiment: bad\nseeds: [0]\nmodels: {vae: {}}\ndatasets:\n  digits:\n    latent_dims: [2]\n"
                       "    epochs: 2\n    epochs: 3\n", "the key 'epochs' appears twice"),
]


def dry_run(workdir: Path, case) -> subprocess.CompletedProcess:
    _, config, _ = case
    text = config if isinstance(config, str) else yaml.safe_dump(config(copy.deepcopy(BASE)))
    (workdir / "config.yaml").write_text(text)
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
                           "--configfile", str(workdir / "config.yaml"), "--cores", "1", "-n"],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    folders = [tmp_path_factory.mktemp(case[0].replace(" ", "-")) for case in CASES]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(dry_run, folders, CASES))
    return {case[0]: (result, folder) for case, result, folder in zip(CASES, results, folders)}


@pytest.mark.parametrize("name, expected", [(case[0], case[2]) for case in CASES], ids=[case[0] for case in CASES])
def test_a_malformed_config_fails_the_dry_run_in_one_line(name, expected, outcomes):
    result, folder = outcomes[name]
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, lines
    assert len(lines) == 1 and lines[0].startswith("five: config error: "), lines
    assert expected in lines[0], lines[0]
    assert not (folder / "results").exists()


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30


def test_an_empty_model_entry_is_valid(tmp_path):
    """`vae:` with nothing after it (YAML null) means the model with its defaults, not a crash."""
    config = copy.deepcopy(BASE)
    config["models"]["vae"] = None
    result = dry_run(tmp_path, ("null", lambda c: config, ""))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "results/bad/digits/vae/d2/k0/s0/train.json" in result.stdout
