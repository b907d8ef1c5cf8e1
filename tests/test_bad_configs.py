"""Every malformed workflow config stops the dry run with one line naming the key, no traceback, before any
job is planned (issue 11). Table-driven; the dry runs run a few at a time."""

import copy
import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from workflow_runs import FORKED, snakemake, snakemake_command, write_config

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
    entry = {
        "id": "C1",
        "statement": "s",
        "kind": "paired",
        "model": "five",
        "against": ["vae"],
        "metric": "nll_nats",
    } | changes
    return edit("claims", {"list": [{k: v for k, v in entry.items() if v is not None}]})


# (id, mutation of BASE or raw YAML text, what the one line must contain)
YAML_BOMB = """experiment: bad
defs:
  l0: &l0 [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
  l1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]
  l2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]
  l3: &l3 [*l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2]
  l4: &l4 [*l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3]
  l5: &l5 [*l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4]
  l6: &l6 [*l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5]
  l7: &l7 [*l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6]
  l8: &l8 [*l7, *l7, *l7, *l7, *l7, *l7, *l7, *l7, *l7, *l7]
seeds: *l8
models: {vae: {}}
datasets: {digits: {latent_dims: [2], epochs: 1}}
"""  # 10⁹ values from 9 short lines: the checks walk every one, so the size is refused first

CASES = [
    ("yaml bomb", YAML_BOMB, "the config holds more than 100,000 values"),
    ("empty mapping", "# every setting commented out\n{}\n", "the config holds no settings"),  # not the paper's
    ("experiment too long", edit("experiment", "a" * 300), "is too long"),
    ("seed beyond 64 bits", edit("seeds", [0, 2**70]), "seeds.1"),
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
    (  # the evaluation would run for ever after the training
        "importance samples beyond int64",
        edit("datasets.digits.importance_samples", 10**20),
        "datasets.digits.importance_samples: 100000000000000000000 is greater than the maximum",
    ),
    ("probes zero", edit("models.five.probes", [0]), "models.five.probes.0"),
    ("probes above d", edit("models.five.probes", [1, 8]), "models.five.probes has K=8 > latent dim 2"),
    ("device gpu", edit("device", "gpu"), "invalid config at device"),
    ("model selection", edit("model_selection", "worst"), "invalid config at model_selection"),
    ("sigma policy", edit("sigma", "guess"), "invalid config at sigma"),
    ("experiment with space", edit("experiment", "my exp"), "invalid config at experiment"),
    (
        "runtime zero",
        edit("datasets.digits.resources", {"train": {"runtime": 0}}),
        "datasets.digits.resources.train.runtime",
    ),
    (
        "table probes not swept",
        edit("table_probes", {"five": 3}),
        "table_probes.five = 3 is not a swept budget of models.five.probes",
    ),
    (
        "table probes of absent model",
        lambda c: edit("table_probes", {"fif": 1})(edit("models.fif", delete=True)(c)),
        "table_probes.fif is set but fif is not in models",
    ),
    ("conv on flat data", edit("datasets.digits.architecture", "conv"), "datasets.digits.architecture = conv"),
    (
        "d > D for five",
        edit("datasets.manifold.latent_dims", [2, 12]),
        "datasets.manifold.latent_dims [12] exceed D = 10",
    ),
    ("claims confidence", edit("claims", {"confidence": 1.5}), "invalid config at claims.confidence"),
    ("claims min seeds", edit("claims", {"min_seeds": 1}), "invalid config at claims.min_seeds"),
    ("claim kind", claim(kind="vibes"), "invalid config at claims.list.0.kind"),
    ("claim without metric", claim(metric=None), "'metric' is a required property"),
    ("claim without against", claim(against=None), "claims.list.0 (C1): kind paired compares two sides"),
    ("claim unknown metric", claim(metric="accuracy"), "invalid config at claims.list.0.metric"),
    (
        "duplicated key",
        "experiment: bad\nseeds: [0]\nmodels: {vae: {}}\ndatasets:\n  digits:\n    latent_dims: [2]\n"
        "    epochs: 2\n    epochs: 3\n",
        "the key 'epochs' appears twice",
    ),
    (
        "lr not a number",
        "experiment: bad\nseeds: [0]\nmodels: {vae: {}}\ndatasets:\n  digits:\n    latent_dims: [2]\n"
        "    epochs: 2\n    lr: .nan\n",
        "datasets.digits.lr: nan is not of type 'number' (numbers must be finite)",
    ),
    ("tracking uri a bare path", edit("tracking_uri", "/tmp/mlruns"), "is MLflow's file store"),
    (
        "tracking uri a text file",
        edit("tracking_uri", f"sqlite:///{Path(__file__).resolve()}"),
        "test_bad_configs.py is not an SQLite database",
    ),
    ("tracking uri with a newline", edit("tracking_uri", "sqlite:////tmp/a\nb.db"), "holds a control character"),
    (  # a run folder the sweep is about to make: the database's journals would lie among the run's files
        "tracking database in a run folder",
        edit("tracking_uri", "sqlite:///results/bad/digits/five/d4/k2/s0/m.db"),
        "the tracking database results/bad/digits/five/d4/k2/s0/m.db lies in the run folder",
    ),
    (
        "data_dir a file, with mnist",
        lambda c: edit("data_dir", str(ROOT / "README.md"))(
            edit("datasets.mnist", {"latent_dims": [2], "epochs": 1})(c)
        ),
        "README.md is a file, not a folder: the sweep reads mnist from it",
    ),
    ("data_dir a wildcard", edit("data_dir", "data{x}"), "data_dir 'data{x}' holds a brace, which Snakemake reads"),
    ("data_dir with a NUL byte", edit("data_dir", "a\0b"), "data_dir 'a\\x00b' holds a control character"),
    ("data_dir name too long", edit("data_dir", "d" * 300), "holds a name of 300 bytes; five takes names"),
    ("data_dir a lone surrogate", edit("data_dir", "\ud800"), "data_dir '\\ud800' holds a control character"),
    ("data_dir path too long", edit("data_dir", "/d" * 3000), "6,000 bytes long; five takes paths of at most 3,841"),
    (  # a heading and a table of its own in claims.md
        "claims note of several lines",
        edit("claims", {"note": "line\n\n## Injected\n| a |", "list": []}),
        "claims.note 'line\\n\\n## Injected\\n| a |' holds a control character",
    ),
    ("claim statement ringing a bell", claim(statement="s\x07"), "claims.list.0.statement 's\\x07' holds a control"),
    ("claim statement turned right to left", claim(statement="s\u202ex"), "claims.list.0.statement 's\\u202ex'"),
    ("claim margin reason of two lines", claim(margin_reason="a\nb"), "claims.list.0.margin_reason 'a\\nb' holds"),
    ("a key of two lines", edit("models.v\nae", {}), "the key 'v\\nae' under models holds a control character"),
    (
        "claim on an unswept model",
        lambda c: claim(against=["fcvae"])(edit("models.fcvae", delete=True)(c)),
        "claims.list.0 (C1): fcvae is not swept",
    ),
]


def dry_run(workdir: Path, case) -> subprocess.CompletedProcess:
    _, config, _ = case
    path = write_config(workdir, config if isinstance(config, str) else config(copy.deepcopy(BASE)))
    return snakemake(snakemake_command(workdir, path, "--cores", "1", "-n"), timeout=300)


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


def unstamped(output: str) -> str:
    """Snakemake's output without what differs in every invocation: its date, workflow id and job times."""
    return re.sub(r"^(\s*(Date|Workflow ID): .*|\[\w{3} \w{3} [\d :]+\])$", "", output, flags=re.MULTILINE)


def test_the_tests_forked_snakemake_answers_as_a_fresh_process(tmp_path):
    """The launcher the workflow tests run Snakemake through (tests/snakemake_forks.py) gives what a fresh
    `python -m snakemake` gives: the same exit status and output (for a planned sweep, the same words: the
    files a job's reason lists are a set's, in an order string hashing picks), and a timeout ends it with its
    jobs."""
    for name, edit in (("refused", lambda c: c | {"seeds": []}), ("planned", lambda c: c)):
        config_path = write_config(tmp_path, edit(copy.deepcopy(BASE)))
        command = snakemake_command(tmp_path, config_path, "--cores", "1", "-n")
        fresh = subprocess.run(command, capture_output=True, text=True, timeout=300)
        forked = snakemake(command, timeout=300)
        assert command in FORKED and forked.returncode == fresh.returncode == (2 if name == "refused" else 0)
        outputs = [unstamped(result.stdout) + "\n--\n" + unstamped(result.stderr) for result in (forked, fresh)]
        if name == "planned":
            outputs = [sorted(re.split(r"[\s,;]+", output)) for output in outputs]
        assert outputs[0] == outputs[1], name
    with pytest.raises(subprocess.TimeoutExpired):  # the sweep's first train job is running by then
        snakemake(snakemake_command(tmp_path, config_path, "--cores", "1"), timeout=5)
    assert subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True).stdout == b""


def test_an_empty_model_entry_is_valid(tmp_path):
    """`vae:` or `fif:` with nothing after it (YAML null) means the model with its defaults, not a crash (`fif:`
    was one: the schema's default β was set on None), in the workflow and in `five estimate`'s loading."""
    from five.sweep.table import load_sweep_config, sweep_table

    config = copy.deepcopy(BASE)
    config["models"] = dict.fromkeys(config["models"])
    result = dry_run(tmp_path, ("null", lambda c: config, ""))
    assert result.returncode == 0, result.stderr[-2000:]
    for model, budget in (("vae", 0), ("fcvae", 0), ("fif", 1), ("five", 1)):
        assert f"results/bad/digits/{model}/d2/k{budget}/s0/train.done" in result.stdout
    path = tmp_path / "null.yaml"
    path.write_text(yaml.safe_dump(config))
    rows = sweep_table(load_sweep_config(path)).set_index("model")
    assert rows.loc["fif", "beta"].iloc[0] == 10 and json.loads(rows.loc["fif", "training_json"].iloc[0])["beta"] == 10


def one_config_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("five: config error: "), lines
    return lines[0]


@pytest.mark.parametrize("where", ["results", "results/bad", "logs", "logs/bad", "logs (a link to /dev/null)"])
def test_an_experiment_folder_that_is_a_file_fails_the_dry_run_in_one_line(tmp_path, where):
    """Where the experiment's results or job logs go must be a folder (or nothing yet): Snakemake itself fails
    there in a traceback, after planning."""
    if where.endswith("/dev/null)"):
        where, kind = "logs", "a device"
        (tmp_path / where).symlink_to("/dev/null")
    else:
        kind = "a file"
        (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / where).write_text("not a folder")
    line = one_config_error(dry_run(tmp_path, ("file", lambda c: c, "")))
    assert f"{where} is {kind}, not a folder" in line


def test_a_tracking_uri_from_the_environment_is_checked_as_the_configs(tmp_path, monkeypatch):
    """MLFLOW_TRACKING_URI (used where the config sets no tracking_uri) that MLflow cannot serve the sweep from
    stops the dry run, as the config key does, instead of every job running untracked."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "garbage")
    assert "MLFLOW_TRACKING_URI 'garbage' is MLflow's file store" in one_config_error(
        dry_run(tmp_path, ("env", lambda c: c, ""))
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///results/bad/manifold/vae/d2/k0/s0/m.db")
    assert "lies in the run folder" in one_config_error(dry_run(tmp_path, ("env", lambda c: c, "")))
    for accepted in ("http://127.0.0.1:5000", ""):  # set but empty is unset: the default database
        monkeypatch.setenv("MLFLOW_TRACKING_URI", accepted)
        assert dry_run(tmp_path, ("env", lambda c: c, "")).returncode == 0


# --- the same checks in-process (each is the dry run's code path: load_sweep_config, then sweep_table) ---------------
PLAIN = "experiment: bad\nseeds: [0]\nmodels: {vae: {}, five: {probes: [1]}}\n"
DIGITS = "datasets:\n  digits: {latent_dims: [2], epochs: 2%s}\n"
CLAIM = "claims:\n  list:\n    - {id: C1, statement: s, kind: %s, model: five, metric: nll_nats%s}\n"


def yaml_case(datasets="", top="", claim_kind=None, claim_extra="", models=None):
    text = (PLAIN if models is None else f"experiment: bad\nseeds: [0]\nmodels: {models}\n") + top
    text += DIGITS % datasets
    if claim_kind:
        text += CLAIM % (claim_kind, claim_extra)
    return text


LOADED = [
    (  # the workflow sweeps the built-in data sets; a user's npz runs through the commands
        "a user's npz as a swept data set",
        'experiment: bad\nseeds: [0]\nmodels: {vae: {}}\ndatasets: {"npz:own.npz": {latent_dims: [2], epochs: 1}}\n',
        "('npz:own.npz' was unexpected) (the workflow sweeps digits, manifold, mnist, cifar10; a data set of your "
        "own, npz:PATH, is for the commands: `five train`, `five evaluate`, `five time-steps`)",
    ),
    (  # Slurm would refuse every job at submission, after the dry run had passed
        "memory beyond any node",
        yaml_case(", resources: {train: {mem_mb: 1000000000000000000000000000000}}"),
        "resources.train.mem_mb: 1000000000000000000000000000000 is greater than the maximum of 100000000",
    ),
    (
        "runtime beyond any time limit",
        yaml_case(", resources: {evaluate: {runtime: 600000}}"),
        "resources.evaluate.runtime: 600000 is greater than the maximum of 525600",
    ),
    (  # its sums overflowed the sign-flip test to p = 0
        "claim margin beyond any metric's",
        yaml_case(claim_kind="equivalent", claim_extra=", against: [vae], margin: 1.0e+308"),
        "claims.list.0.margin: 1e+308 is greater than the maximum of 1000000000000",
    ),
    (  # what Snakemake's --config pack_seeds=false gives
        "boolean as text",
        yaml_case(top='pack_seeds: "false"\n'),
        "pack_seeds: 'false' is not of type 'boolean' (given with --config on the command line? There a value is",
    ),
    (
        "list items as text",
        yaml_case(models="{five: {probes: ['1']}}"),
        "probes.0: '1' is not of type 'integer' (given",
    ),
    ("lr infinite", yaml_case(", lr: .inf"), "datasets.digits.lr: inf is not of type 'number'"),
    (  # passes the schema (an int is finite); the runs' own check refuses it while the workflow plans
        "lr too large for a float",
        yaml_case(", lr: 1" + "0" * 400),
        "datasets.digits × models.vae: the setting lr must be a finite number",
    ),
    (  # the workflow's dry run refuses it as `five train` does: 0 in float32
        "lr below float32",
        yaml_case(", lr: 1.0e-50"),
        "datasets.digits × models.vae: the setting lr is 1e-50, beyond float32",
    ),
    (  # the last would win and the first vanish from the table
        "reference twice for one cell",
        yaml_case(", reference: [{model: vae, latent_dim: 2, value: 1}, {model: vae, latent_dim: 2, value: 2}]"),
        "datasets.digits.reference.1 and .0 both give vae's reference at d = 2, every K",
    ),
    (
        "reference twice for one budget",
        yaml_case(
            ", reference: [{model: five, latent_dim: 2, probes: 1, value: 1}, {model: five, latent_dim: 2, probes: 1, value: 2}]"
        ),
        "both give five's reference at d = 2, K = 1",
    ),
    (  # the entry for every K was dropped without a word
        "reference for every K shadowed at every swept K",
        yaml_case(
            ", reference: [{model: five, latent_dim: 2, value: 3}, {model: five, latent_dim: 2, probes: 1, value: 4}]"
        ),
        "datasets.digits.reference.0 (every K) is shown nowhere: each swept budget of five [1] at d = 2 has an entry",
    ),
    (  # only its sample variant runs: no cell is five's
        "reference of five when only its sample variant runs",
        yaml_case(", reference: [{model: five, latent_dim: 2, value: 1}]").replace(
            "five: {probes: [1]}", "five: {probes: [1], surrogate_points: [sample]}"
        ),
        "five at d = 2 is not swept on digits",
    ),
    (
        "reference of a model not swept",
        yaml_case(", reference: [{model: fif, latent_dim: 2, value: 1}]"),
        "datasets.digits.reference.0: fif at d = 2 is not swept on digits",
    ),
    (
        "reference at a latent dim not swept",
        yaml_case(", reference: [{model: vae, latent_dim: 7, value: 1}]"),
        "vae at d = 7 is not swept on digits",
    ),
    (
        "reference at a budget not swept",
        yaml_case(", reference: [{model: five, latent_dim: 2, probes: 2, value: 1}]"),
        "K = 2 is not a swept budget of five [1]",
    ),
    (  # a row of claims.md and a line of the printed summary each
        "claim statement of two lines",
        yaml_case(claim_kind="paired", claim_extra=", better: lower, against: [vae]").replace(
            "statement: s,", 'statement: "s\\nt",'
        ),
        "claims.list.0.statement 's\\nt' holds a control character",
    ),
    (
        "claim id ending in a line break",
        yaml_case(claim_kind="paired", claim_extra=", better: lower, against: [vae]").replace(
            "id: C1,", 'id: "C1\\n",'
        ),
        "claims.list.0.id 'C1\\n' holds a control character",
    ),
    ("log sigma lr minus infinity", yaml_case(", log_sigma_lr: -.inf"), "datasets.digits.log_sigma_lr"),
    ("beta not a number", yaml_case(models="{fif: {beta: .nan}}"), "models.fif.beta"),
    ("safety factor infinite", yaml_case(top="estimate_safety_factor: .inf\n"), "estimate_safety_factor"),
    ("safety factor 1e308", yaml_case(top="estimate_safety_factor: 1.0e+308\n"), "1e+308 is greater than the maximum"),
    ("gpus a million", yaml_case(top="gpus: 1000000\n"), "gpus: 1000000 is greater than the maximum of 4096"),
    (
        "margin of 1e308 bits per dimension",  # overflowed to an infinite margin in nats: every cell 'inconclusive'
        yaml_case(claim_kind="equivalent", claim_extra=", against: [vae], margin_bits_per_dim: 1.0e+308"),
        "margin_bits_per_dim: 1e+308 is greater than the maximum",
    ),
    (
        "margin not a number",
        yaml_case(claim_kind="paired", claim_extra=", better: lower, against: [vae], margin: .nan"),
        "margin",
    ),
    ("factor infinite", yaml_case(claim_kind="ratio_at_most", claim_extra=", against: [vae], factor: .inf"), "factor"),
    (
        "experiment with a newline",
        yaml_case().replace("experiment: bad", 'experiment: "abc\\n"'),
        "experiment 'abc\\n' holds a control character",
    ),
    ("experiment ..", yaml_case().replace("experiment: bad", 'experiment: ".."'), "starts with a letter or digit"),
    ("experiment .", yaml_case().replace("experiment: bad", 'experiment: "."'), "starts with a letter or digit"),
    (
        "experiment like an option",
        yaml_case().replace("experiment: bad", 'experiment: "-x"'),
        "starts with a letter or digit",
    ),
    (
        "experiment named like the MLflow database",
        yaml_case().replace("experiment: bad", "experiment: mlflow.db"),
        "does not start with mlflow.db",
    ),
    (  # SQLite's journal beside the database: a folder of that name breaks tracking for every experiment
        "experiment named like the database's journal",
        yaml_case().replace("experiment: bad", "experiment: mlflow.db-journal"),
        "does not start with mlflow.db",
    ),
    (
        "experiment named like the shared artifacts",
        yaml_case().replace("experiment: bad", "experiment: benchmarks"),
        "none of",
    ),
    (
        "claim on five when only its sample variant runs",
        yaml_case(claim_kind="paired", claim_extra=", better: lower, against: [vae]").replace(
            "five: {probes: [1]}", "five: {probes: [1], surrogate_points: [sample]}"
        ),
        "five is not swept",
    ),
    ("tracking uri file store", yaml_case(top="tracking_uri: file:///tmp/mlruns\n"), "MLflow's file store"),
    ("tracking uri relative path", yaml_case(top="tracking_uri: ./mlruns\n"), "MLflow's file store"),
    ("tracking uri unknown scheme", yaml_case(top="tracking_uri: ftp://host/x\n"), "unknown scheme 'ftp'"),
    # taken for a server that is down: every job went on untracked
    (
        "tracking uri a server without host",
        yaml_case(top="tracking_uri: 'http://:5000'\n"),
        "names no server (no host or a malformed one)",
    ),
    (
        "ratio without factor",
        yaml_case(claim_kind="ratio_at_most", claim_extra=", against: [vae]"),
        "kind ratio_at_most needs `factor`",
    ),
    (
        "claim model not swept",
        yaml_case(claim_kind="paired", claim_extra=", better: lower, against: [vae]").replace(
            "model: five, metric", "model: fif, metric"
        ),
        "fif is not swept",
    ),
    (
        "claim budget not swept",
        yaml_case(claim_kind="paired", claim_extra=", better: lower, probes: 4, against: [vae]"),
        "five at K=4 is not swept",
    ),
    (
        "claim against budget not swept",
        yaml_case(claim_kind="equivalent", claim_extra=", against: [{model: five, probes: 8}], margin: 1"),
        "five at K=8 is not swept",
    ),
    (
        "claim on the sample variant not swept",
        yaml_case(claim_kind="paired", claim_extra=", better: lower, against: [five-sample]"),
        "five-sample is not swept",
    ),
    (
        "claim budget of a model without one",
        yaml_case(claim_kind="paired", claim_extra=", against: [{model: vae, probes: 1}]"),
        "vae at K=1 is not swept",
    ),
    (
        "claim against itself",
        yaml_case(claim_kind="paired", claim_extra=", better: lower, against: [five]"),
        "`against` repeats the claim's own side (five at K=1)",
    ),
    (
        "claim against itself at its budget",
        yaml_case(claim_kind="paired", claim_extra=", probes: 1, against: [{model: five, probes: 1}]"),
        "repeats the claim's own side (five at K=1)",
    ),
    (
        "claim on an unswept data set",
        yaml_case(claim_kind="paired", claim_extra=", better: lower, against: [vae], datasets: [mnist]"),
        "data set mnist is not swept",
    ),
    (
        "claim ids repeated",
        yaml_case(claim_kind="paired", claim_extra=", better: lower, against: [vae]")
        + "    - {id: C1, statement: t, kind: paired, model: vae, against: [five], metric: nll_nats, better: lower}\n",
        "the id 'C1' is used by an earlier claim",
    ),
    (
        "paired claim without better",
        yaml_case(claim_kind="paired", claim_extra=", against: [vae]"),
        "kind paired needs `better`",
    ),
    (
        "equivalence without a margin",
        yaml_case(claim_kind="equivalent", claim_extra=", against: [vae], margin: 0"),
        "kind equivalent needs a `margin` > 0",
    ),
    ("collapse claim on a likelihood", yaml_case(claim_kind="below_latent_dim"), "nll_nats is not one (active_units"),
    (  # its log ratio would be tested over seeds alone, though every seed shares one test set's draw
        "ratio claim on a mean over test examples",
        yaml_case(claim_kind="ratio_at_most", claim_extra=", against: [vae], factor: 2"),
        "kind ratio_at_most compares times; nll_nats is a mean over test examples",
    ),
    (
        "two margins",
        yaml_case(claim_kind="equivalent", claim_extra=", against: [vae], margin: 1, margin_bits_per_dim: 0.1"),
        "not both",
    ),
    (
        "bits/dim margin on a count",
        yaml_case(claim_kind="paired", claim_extra=", better: lower, against: [vae], margin_bits_per_dim: 0.1").replace(
            "metric: nll_nats", "metric: active_units"
        ),
        "is not in nats",
    ),
    (
        "claim against one side twice",
        yaml_case(claim_kind="paired", claim_extra=", better: lower, against: [vae, {model: vae}]"),
        "`against` names vae twice",
    ),
    (
        "claim against one side, written with and without its budget",
        yaml_case(
            claim_kind="paired",
            claim_extra=", better: lower, against: [vae, fif, {model: fif, probes: 1}]",
            models="{vae: {}, fif: {probes: [1]}, five: {probes: [1]}}",
        ),
        "`against` names fif at K=1 twice",
    ),
    (
        "claim against itself, its budget left out on one side",
        yaml_case(claim_kind="paired", claim_extra=", better: lower, against: [{model: five, probes: 1}]"),
        "`against` repeats the claim's own side (five at K=1)",
    ),
    (
        "factor on a paired claim",
        yaml_case(claim_kind="paired", claim_extra=", better: lower, against: [vae], factor: 2"),
        "kind paired does not use `factor`",
    ),
    (
        "better on an equivalence",
        yaml_case(claim_kind="equivalent", claim_extra=", against: [vae], margin: 1, better: lower"),
        "kind equivalent does not use `better`",
    ),
    (
        "a margin on a ratio",
        yaml_case(claim_kind="ratio_at_most", claim_extra=", against: [vae], factor: 3, margin: 1"),
        "kind ratio_at_most does not use `margin`",
    ),
    (
        "against on a collapse claim",
        yaml_case(claim_kind="below_latent_dim", claim_extra=", against: [vae]").replace(
            "metric: nll_nats", "metric: active_units"
        ),
        "kind below_latent_dim does not use `against`",
    ),
    (
        "largest d on a trend",
        yaml_case(
            claim_kind="grows_with_latent_dim", claim_extra=", better: higher, against: [vae], latent_dims: largest"
        ),
        "kind grows_with_latent_dim does not use `latent_dims`",
    ),
    (
        "empty claim id",
        yaml_case(claim_kind="paired", claim_extra=", better: lower, against: [vae]").replace("id: C1", "id: ''"),
        "claims.list.0.id",
    ),
    (
        "blank claim statement",
        yaml_case(claim_kind="paired", claim_extra=", better: lower, against: [vae]").replace(
            "statement: s", "statement: '  '"
        ),
        "claims.list.0.statement",
    ),
    ("cuda graph unknown", yaml_case(", cuda_graph: sometimes"), "datasets.digits.cuda_graph"),
    (
        "d = D + 1 for five",
        "experiment: bad\nseeds: [0]\nmodels: {five: {probes: [1]}}\n"
        "datasets:\n  manifold: {latent_dims: [11], epochs: 1}\n",
        "[11] exceed D = 10",
    ),
    (
        "d = D + 1 for fif",
        "experiment: bad\nseeds: [0]\nmodels: {fif: {}}\ndatasets:\n  digits: {latent_dims: [65], epochs: 1}\n",
        "[65] exceed D = 64",
    ),
    (
        "merge key then a repeated key",
        "defaults: &d {epochs: 2}\n"
        + yaml_case().replace(
            "digits: {latent_dims: [2], epochs: 2}", "digits: {<<: *d, latent_dims: [2], latent_dims: [3]}"
        ),
        "the key 'latent_dims' appears twice",
    ),
]


@pytest.mark.parametrize("text, expected", [case[1:] for case in LOADED], ids=[case[0] for case in LOADED])
def test_a_malformed_config_is_one_config_error(tmp_path, text, expected):
    from five.base.errors import ConfigError
    from five.sweep.table import load_sweep_config, sweep_table

    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        sweep_table(load_sweep_config(tmp_path / "config.yaml"))
    assert expected in str(caught.value) and "\n" not in str(caught.value).strip(), str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        yaml_case(", cuda_graph: on"),  # YAML's bare on is true: a mode all the same
        "experiment: ok\nseeds: [0]\nmodels: {five: {probes: [1]}}\ndatasets:\n  manifold: {latent_dims: [10], epochs: 1}\n",
        yaml_case(top="tracking_uri: http://127.0.0.1:5000\n"),
        yaml_case(top="tracking_uri: databricks\n"),
        yaml_case(claim_kind="equivalent", claim_extra=", probes: 1, against: [vae], margin: 1"),
        yaml_case(
            ", reference: [{model: vae, latent_dim: 2, value: 1}, {model: five, latent_dim: 2, probes: 1, value: 2}]"
        ),
        yaml_case(  # one for K = 1, one for every other K
            ", reference: [{model: five, latent_dim: 2, probes: 1, value: 2}, {model: five, latent_dim: 2, value: 1}]"
        ).replace("five: {probes: [1]}", "five: {probes: [1, 2]}"),
    ],
    ids=[
        "cuda graph on",
        "d = D",
        "tracking server",
        "databricks",
        "a valid claim",
        "references",
        "reference overridden",
    ],
)
def test_valid_edges_are_accepted(tmp_path, text):
    from five.sweep.table import load_sweep_config

    (tmp_path / "config.yaml").write_text(text)
    load_sweep_config(tmp_path / "config.yaml")


def test_yaml_merge_keys_share_settings_and_may_be_overridden(tmp_path):
    """`<<: *anchor` (valid YAML that people use to share per-data-set settings) works, an explicit key
    overriding the merged one; a top-level key that only holds an anchor is still an unknown key, named."""
    from five.base.errors import ConfigError
    from five.sweep.table import load_sweep_config

    (tmp_path / "config.yaml").write_text(
        "experiment: merged\nseeds: [0]\nmodels: {vae: {}}\n"
        "datasets:\n  digits: &shared {epochs: 3, lr: 0.001, hidden_width: 16, latent_dims: [2]}\n"
        "  manifold: {<<: *shared, epochs: 5}\n"
    )
    config = load_sweep_config(tmp_path / "config.yaml")
    assert config["datasets"]["manifold"] | {} == config["datasets"]["digits"] | {"epochs": 5}
    (tmp_path / "config.yaml").write_text("shared: &s {epochs: 3}\n" + (tmp_path / "config.yaml").read_text())
    with pytest.raises(ConfigError, match="'shared' was unexpected"):
        load_sweep_config(tmp_path / "config.yaml")


def test_estimate_says_what_a_config_path_is_when_it_is_not_a_file(tmp_path):
    from five.base.errors import ConfigError
    from five.sweep.table import load_sweep_config

    with pytest.raises(ConfigError, match="is a folder, not a file"):
        load_sweep_config(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep_config(tmp_path / "absent.yaml")
