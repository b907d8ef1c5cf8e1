"""The sweep table: a validated workflow config → one row per training run.

Per-model axes are rows, not a blind product: the Hutchinson budget multiplies only fif and five (the other
models get probes = NO_PROBES (0): "not applicable"), and per-dataset settings (latent dims, epochs, …) apply to
that dataset's rows only.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from functools import lru_cache
from pathlib import Path

import pandas as pd

from five.base.config import (
    DEFAULT_PROBES,
    DEFAULT_SURROGATE_POINT,
    MODELS_WITH_FIXED_SIGMA,
    MODELS_WITH_PROBES,
    NO_PROBES,
    TrainConfig,
    cuda_graph_mode,
    model_dir,
)
from five.base.errors import ConfigError, one_line
from five.base.files import non_regular_kind, not_a_folder, path_problem, shown_path
from five.base.metrics import COUNT_METRICS
from five.data.catalog import DATA_SHAPES, FILES, NPZ_PREFIX
from five.run.tracking import DEFAULT_DATABASE, check_tracking_uri
from five.sweep.claims import COMPARING_KINDS, KIND_OPTIONS, PER_EXAMPLE_SOURCES, claim_selectors, side_probes

RESULTS_ROOT = "results"  # what experiments share: the MLflow database, GPU locks, caches
LOGS_ROOT = "logs"  # each experiment's job logs, in logs/<experiment>/
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a folder name that no option parser misreads
SHARED_NAMES = ("mlflow-artifacts", "benchmarks")  # what results/ holds beside the experiments and the database


def point_folder(root: str, dataset, model, latent_dim, probes, *inside: str) -> str:
    """A sweep point's folder under `root` (its seeds' run folders live in it), or the path `inside` it. The
    only place the layout is written: the workflow calls it with its wildcards ("{dataset}", …) for its
    patterns and log paths."""
    return "/".join([root, str(dataset), str(model), f"d{latent_dim}", f"k{probes}", *inside])


def run_folder(root: str, dataset, model, latent_dim, probes, seed) -> str:
    """A run's folder: its sweep point's, then the seed (`model` is the folder name, model_dir; K 0 = none)."""
    return point_folder(root, dataset, model, latent_dim, probes, f"s{seed}")


def experiment_dir(config: dict, root: str = RESULTS_ROOT) -> str:
    """Where one experiment's runs and aggregated outputs live (results/<experiment>/): two configs of different
    experiments never write over, or pass for, each other's tables; edits of one config share it."""
    return f"{root}/{config['experiment']}"


FINGERPRINT_HEX_DIGITS = 12


def fingerprint(value) -> str:
    """A short hash of a JSON-able value: the same value (dict keys in any order) gives the same fingerprint."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_HEX_DIGITS]


def in_key_order(value):
    """`value` with every mapping's keys sorted: as a workflow parameter, it stays the same when the config's keys
    are merely reordered (Snakemake compares parameters as written, and a changed one reruns the job)."""
    if isinstance(value, dict):
        return {key: in_key_order(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list):
        return [in_key_order(item) for item in value]
    return value


def is_fingerprint(text: str) -> bool:
    """Whether `text` is spelled as `fingerprint` spells one (config snapshots are named by theirs)."""
    return re.fullmatch(f"[0-9a-f]{{{FINGERPRINT_HEX_DIGITS}}}", text) is not None


def config_hash(config: dict) -> str:
    """A short fingerprint of the validated config (defaults filled in), stamped on tables and claims."""
    return fingerprint(config)


MODEL_DIR_PATTERN = "vae|fcvae|fif|five|five-sample"  # the {model} wildcard of the workflow's run folders


def sweep_seeds(config: dict) -> list[int]:
    """The seeds in the order every job lists its runs: sorted, so that reordering `seeds` changes no job."""
    return sorted(config["seeds"])


def swept_probes(model: str, model_settings: dict | None) -> list[int]:
    """The Hutchinson budgets K a model's runs sweep: its `probes`, default [DEFAULT_PROBES]; [NO_PROBES] for
    the models without a budget. (`model_settings` None: `vae:` with nothing after it is YAML null.)"""
    if model not in MODELS_WITH_PROBES:
        return [NO_PROBES]
    return (model_settings or {}).get("probes", [DEFAULT_PROBES])


def swept_surrogate_points(model: str, model_settings: dict | None) -> list[str | None]:
    """FIVE's swept surrogate points, default [DEFAULT_SURROGATE_POINT]; [None] for the other models."""
    if model != "five":
        return [None]
    return (model_settings or {}).get("surrogate_points", [DEFAULT_SURROGATE_POINT])


# A data set's settings that are TrainConfig fields of the same name (training_settings passes them on as they are)
TRAIN_SETTINGS = (
    "epochs",
    "batch_size",
    "lr",
    "log_sigma_lr",
    "architecture",
    "hidden_width",
    "checkpoint_every",
    "eval_every",
    "patience",
)


def reject_duplicate_keys(path: str | Path) -> None:
    """YAML lets a repeated key silently replace the first (a second `epochs:` wins); refuse it, naming it."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: its keys may be overridden here
                    continue
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise ConfigError(
                        f"{path}: the key {key!r} appears twice in one mapping (line "
                        f"{key_node.start_mark.line + 1}); YAML would silently keep the last"
                    )
                seen.add(key)
            return super().construct_mapping(node, deep)

    yaml.load(Path(path).read_text(encoding="utf-8"), Loader=UniqueKeyLoader)


SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def load_sweep_config(path: str | Path) -> dict:
    """A sweep config file as the workflow sees it: checked (one line naming the key) and with the schema's
    defaults filled in."""
    import yaml

    if not Path(path).is_file():
        kind = non_regular_kind(Path(path))
        raise ConfigError(f"config file {path} {f'is {kind}, not a file' if kind else 'does not exist'}")
    try:
        reject_duplicate_keys(path)
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text (byte {error.start}: {error.reason})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} is not a YAML mapping of config keys")
    validate_config(config, SCHEMA_PATH)
    return config


def validate_config(config: dict, schema_path: str | Path) -> None:
    """check_config's one-line check, then Snakemake's validation, which fills in the schema's defaults. A model
    written with nothing after it (`fif:`, YAML null) gets them as `fif: {}` would: the validation sets them on
    a mapping."""
    from snakemake.utils import validate

    check_config(config, schema_path)
    models = load_schema(schema_path)["properties"]["models"]["properties"]
    for model, settings in config["models"].items():
        if settings is None and any("default" in option for option in models[model].get("properties", {}).values()):
            config["models"][model] = {}
    validate(config, str(schema_path))


def check_config(config: dict, schema_path: str | Path) -> None:
    """Validate against the closed JSON schema with one line naming the offending key (Snakemake's own
    validation, which also fills in defaults, follows; its message dumps the whole sub-schema)."""
    import jsonschema

    if not config:  # a --configfile holding `{}`: Snakemake would otherwise fall back to the paper config
        raise ConfigError("the config holds no settings (to run the paper config, name config/config.yaml)")
    check_config_size(config)
    check_config_strings(config)
    schema = load_schema(schema_path)
    error = jsonschema.exceptions.best_match(strict_validator(schema).iter_errors(config))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "the top level"
        finite = (
            " (numbers must be finite)"
            if isinstance(error.instance, float) and not math.isfinite(error.instance)
            else ""
        )
        raise ConfigError(
            f"invalid config at {where}: {error.message}{finite}{command_line_hint(error)}{npz_hint(error, config)}"
        )
    check_sweep(config)


@lru_cache(maxsize=2)
def load_schema(schema_path: str | Path) -> dict:
    import yaml

    return yaml.safe_load(Path(schema_path).read_text())


def command_line_hint(error) -> str:
    """How Snakemake's `--config key=value` reads a value, where text stands for a number, boolean or list: text
    unless it reads as a number or True/False (not true/false), and a list's items always as text."""
    if error.validator != "type" or not isinstance(error.instance, str):
        return ""
    return (
        " (given with --config on the command line? There a value is text unless it reads as a number or as "
        "True/False, and a list's items are text: write lists in a config file)"
    )


def npz_hint(error, config: dict) -> str:
    """Where a config names a user's npz among its data sets: the workflow sweeps the built-in ones only."""
    if list(error.absolute_path) != ["datasets"] or not any(
        str(name).startswith(NPZ_PREFIX) for name in config.get("datasets") or {}
    ):
        return ""
    return (
        f" (the workflow sweeps {', '.join(DATA_SHAPES)}; a data set of your own, {NPZ_PREFIX}PATH, is for the "
        "commands: `five train`, `five evaluate`, `five time-steps`)"
    )


CONFIG_VALUES_LIMIT = 100_000  # far beyond any sweep, far below what a chain of YAML aliases can expand to


def check_config_size(config) -> None:
    """Refuse a config of more than CONFIG_VALUES_LIMIT values, counted as the checks would walk them: YAML
    aliases repeat a value without copying it, so a few lines can stand for billions (a YAML bomb)."""
    pending, count = [config], 0
    while pending:
        value = pending.pop()
        count += 1
        if count > CONFIG_VALUES_LIMIT:
            raise ConfigError(
                f"the config holds more than {CONFIG_VALUES_LIMIT:,} values (YAML aliases repeating aliases?)"
            )
        if isinstance(value, dict):
            pending += [*value.keys(), *value.values()]
        elif isinstance(value, list):
            pending += value


def check_config_strings(config) -> None:
    """Every key and string of the config is one line of visible text (a note folded with `>-` is one)."""
    pending = [("", config)]
    while pending:
        where, value = pending.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, inner in items:
            if not one_line(key):
                raise ConfigError(f"the key {shown_text(key)} under {where or 'the top level'} {NOT_ONE_LINE}")
            place = f"{where}.{key}" if where else str(key)
            if not one_line(inner):
                raise ConfigError(f"{place} {shown_text(inner)} {NOT_ONE_LINE}")
            pending.append((place, inner))


NOT_ONE_LINE = (
    "holds a control character (a newline, NUL or escape): each setting is one line of text "
    "(fold a long note with `>-`)"
)


def shown_text(text: str) -> str:
    """A config string for a one-line message: escaped, a long one shortened."""
    shown = ascii(text)
    return shown if len(shown) <= 80 else f"{shown[:60]}…{shown[-15:]}"


def strict_validator(schema: dict):
    """JSON Schema counts 30.0 as an integer; `five train --epochs 30.0` does not. Integers must be written
    as integers, booleans are not numbers, and a number is finite (YAML's .nan and .inf pass every bound)."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine_many(
        {
            "integer": lambda _, value: isinstance(value, int) and not isinstance(value, bool),
            "number": lambda _, value: isinstance(value, int)
            and not isinstance(value, bool)
            or isinstance(value, float)
            and math.isfinite(value),  # an int is finite (isfinite overflows on 10**400)
        }
    )
    return jsonschema.validators.extend(base, type_checker=checker)(schema)


def check_experiment(experiment: str) -> None:
    """The experiment names results/<experiment>/: a folder name no option parser misreads, none of what
    every experiment shares there, and no file that is there already."""
    shared = experiment in SHARED_NAMES or experiment.startswith(DEFAULT_DATABASE)
    if not EXPERIMENT_NAME.fullmatch(experiment) or shared:
        raise ConfigError(
            f"experiment {experiment!r} must be a folder name of letters, digits, '_', '.' and '-' "
            f"that starts with a letter or digit and is none of {', '.join(SHARED_NAMES)} and does not start "
            f"with {DEFAULT_DATABASE} (the MLflow database's files): it names {RESULTS_ROOT}/<experiment>/"
        )
    for root, what in ((RESULTS_ROOT, "results"), (LOGS_ROOT, "job logs")):
        for folder in (Path(root), Path(root) / experiment):
            kind = not_a_folder(folder)
            if kind is not None:
                raise ConfigError(f"{folder} is {kind}, not a folder: experiment {experiment!r} keeps its {what} there")


def check_sweep(config: dict) -> None:
    """What the schema cannot say but would fail or mislead every job: the main table's budget must be swept,
    conv needs images, and fif/five need d <= D (else their posterior N(f, s·J_f J_fᵀ) is degenerate)."""
    check_experiment(config["experiment"])
    models = {name: settings or {} for name, settings in config["models"].items()}
    for model, probes in config.get("table_probes", {}).items():
        if model not in models:
            raise ConfigError(f"table_probes.{model} is set but {model} is not in models")
        swept = swept_probes(model, models[model])
        if probes not in swept:
            raise ConfigError(
                f"table_probes.{model} = {probes} is not a swept budget of models.{model}.probes "
                f"{swept}: {model} would vanish from the main table"
            )
    check_tracking_uri(config.get("tracking_uri"))
    check_data_dir(config)
    check_claims(config, models)
    for dataset, settings in config["datasets"].items():
        check_references(dataset, settings, models)
        if config.get("device") == "cpu" and cuda_graph_mode(settings.get("cuda_graph")) == "on":
            raise ConfigError(f"datasets.{dataset}.cuda_graph = on needs a CUDA device, but device is cpu")
        shape = DATA_SHAPES[dataset]
        if settings.get("architecture") == "conv" and len(shape) != 3:
            raise ConfigError(
                f"datasets.{dataset}.architecture = conv needs (C, H, W) images; {dataset} is flat "
                f"(D = {shape[0]}): use mlp"
            )
        dim = math.prod(shape)
        for model in MODELS_WITH_PROBES:
            too_large = [d for d in settings["latent_dims"] if d > dim]
            if model in models and too_large:
                raise ConfigError(
                    f"datasets.{dataset}.latent_dims {too_large} exceed D = {dim}: {model}'s "
                    "posterior N(f(x), s·J_f J_fᵀ) would be degenerate (needs d <= D)"
                )


def check_references(dataset: str, settings: dict, models: dict) -> None:
    """Each reference number of datasets.<dataset>.reference stands beside a cell the sweep makes, and no two
    entries say the same (an entry without `probes` serves every budget of its model and d that no entry with
    `probes` names: five.sweep.aggregate.attach_references)."""
    swept, entries = swept_budgets(models), {}
    for index, entry in enumerate(settings.get("reference", [])):
        where = f"datasets.{dataset}.reference.{index}"
        model, latent_dim, probes = entry["model"], entry["latent_dim"], entry.get("probes")
        if model not in swept or latent_dim not in settings["latent_dims"]:
            raise ConfigError(f"{where}: {model} at d = {latent_dim} is not swept on {dataset}, so no cell shows it")
        if probes is not None and probes not in swept[model]:
            raise ConfigError(f"{where}: K = {probes} is not a swept budget of {model} {swept[model]}")
        earlier = entries.setdefault((model, latent_dim, probes), index)
        if earlier != index:
            budget = "every K" if probes is None else f"K = {probes}"
            raise ConfigError(f"{where} and .{earlier} both give {model}'s reference at d = {latent_dim}, {budget}")
    for (model, latent_dim, probes), index in entries.items():
        if probes is None and all((model, latent_dim, k) in entries for k in swept[model]):
            raise ConfigError(
                f"datasets.{dataset}.reference.{index} (every K) is shown nowhere: each swept budget of {model} "
                f"{swept[model]} at d = {latent_dim} has an entry of its own"
            )


def check_data_dir(config: dict) -> None:
    """The folder MNIST and CIFAR-10 are read from (and downloaded into) must be one, where the sweep uses them."""
    read_there = [dataset for dataset in config["datasets"] if dataset in FILES]
    folder = config.get("data_dir")
    problem = None if folder is None else path_problem(Path(folder))
    if problem is not None:  # every job is given it
        raise ConfigError(f"data_dir {shown_path(folder)} {problem}")
    if folder is not None and folder.startswith("-"):
        raise ConfigError(f"data_dir {shown_text(folder)} starts with '-', which its jobs would read as an option")
    if folder is not None and ("{" in folder or "}" in folder):
        raise ConfigError(f"data_dir {shown_text(folder)} holds a brace, which Snakemake reads as a wildcard")
    if not read_there or folder is None:
        return
    kind = not_a_folder(Path(folder))
    if kind is not None:
        raise ConfigError(
            f"data_dir {folder} is {kind}, not a folder: the sweep reads {' and '.join(read_there)} from it"
        )


def swept_budgets(models: dict) -> dict[str, list[int]]:
    """Every model name a claim may use (five-sample where FIVE's sample variant is swept) → its swept K
    ([NO_PROBES] for the models without a budget)."""
    budgets = {model: swept_probes(model, settings) for model, settings in models.items()}
    if "five" in budgets:
        points = swept_surrogate_points("five", models["five"])
        if "sample" in points:
            budgets["five-sample"] = budgets["five"]
        if DEFAULT_SURROGATE_POINT not in points:  # only the variant's runs exist
            del budgets["five"]
    return budgets


def probes_shown(config: dict) -> dict[str, int]:
    """The budget the main table, the plots and a claim without `probes` use for fif/five: the config's
    `table_probes`, else the smallest swept."""
    shown = {}
    for model in MODELS_WITH_PROBES:
        if model in config["models"]:
            budgets = swept_probes(model, config["models"][model])
            shown[model] = config.get("table_probes", {}).get(model, min(budgets))
    if "five" in config["models"] and "sample" in swept_surrogate_points("five", config["models"]["five"]):
        shown["five-sample"] = shown["five"]  # the FIVE variant's runs (method.md §1.4) at the same budget
    return shown


def claim_sides(claim: dict, shown: dict[str, int]) -> list[dict]:
    """The claim's model, then each `against` side, as {"model", "probes"} with the budget a side leaves out
    filled in (`shown`; None for a model without one): `five` and `{model: five, probes: 1}` are one side
    where the table shows K = 1."""
    return [{"model": side["model"], "probes": side_probes(side, shown)} for side in claim_selectors(claim)]


def check_claims(config: dict, models: dict) -> None:
    """Claims that cannot be evaluated fail the dry run, not the claims step after all training: a model,
    budget or data set that is not swept, a comparison of a side with itself, a repeated id, a kind without
    what it needs."""
    budgets, shown, seen = swept_budgets(models), probes_shown(config), set()
    for index, claim in enumerate(config.get("claims", {}).get("list", [])):
        where = f"claims.list.{index} ({claim['id']})"
        if claim["id"] in seen:
            raise ConfigError(f"{where}: the id {claim['id']!r} is used by an earlier claim")
        seen.add(claim["id"])
        if claim["kind"] in COMPARING_KINDS and not claim.get("against"):
            raise ConfigError(f"{where}: kind {claim['kind']} compares two sides; give `against`")
        if claim["kind"] == "ratio_at_most" and "factor" not in claim:
            raise ConfigError(f"{where}: kind ratio_at_most needs `factor` (the largest allowed ratio)")
        sides = claim_sides(claim, shown)
        for side in sides:
            if side["model"] not in budgets:
                raise ConfigError(f"{where}: {side['model']} is not swept (models: {', '.join(budgets)})")
            if side["probes"] not in budgets[side["model"]]:
                raise ConfigError(
                    f"{where}: {side['model']} at K={side['probes']} is not swept (its budgets: "
                    f"{budgets[side['model']]})"
                )
        for index, other in enumerate(sides[1:], start=1):
            if other == sides[0]:
                raise ConfigError(f"{where}: `against` repeats the claim's own side ({describe_side(other)})")
            if other in sides[1:index]:  # a repeated cell would also count twice in Holm's correction
                raise ConfigError(f"{where}: `against` names {describe_side(other)} twice")
        for dataset in claim.get("datasets", []):
            if dataset not in config["datasets"]:
                raise ConfigError(
                    f"{where}: data set {dataset} is not swept (datasets: {', '.join(config['datasets'])})"
                )
        check_claim_keys(claim, where)


def check_claim_keys(claim: dict, where: str) -> None:
    """What each kind needs to be decidable at all, and nothing it would ignore."""
    kind = claim["kind"]
    ignored = sorted(
        set(claim) - {"id", "statement", "kind", "model", "metric", "probes", "datasets"} - KIND_OPTIONS[kind]
    )
    if ignored:
        raise ConfigError(
            f"{where}: kind {kind} does not use {', '.join(f'`{key}`' for key in ignored)} (it reads "
            f"{', '.join(f'`{key}`' for key in sorted(KIND_OPTIONS[kind]))}); remove it"
        )
    if kind in ("paired", "grows_with_latent_dim") and "better" not in claim:
        raise ConfigError(
            f"{where}: kind {kind} needs `better` (lower or higher: which side of the boundary the claim says)"
        )
    if "margin_bits_per_dim" in claim:
        if "margin" in claim:
            raise ConfigError(f"{where}: give `margin` or `margin_bits_per_dim`, not both")
        if claim["metric"] not in ("nll_nats", "elbo_nats"):
            raise ConfigError(
                f"{where}: `margin_bits_per_dim` converts a margin to nats; {claim['metric']} is "
                "not in nats (nll_nats, elbo_nats)"
            )
    if kind == "equivalent" and not max(claim.get("margin", 0), claim.get("margin_bits_per_dim", 0)) > 0:
        raise ConfigError(
            f"{where}: kind equivalent needs a `margin` > 0 (the largest difference that counts "
            "as none); with 0 it could never hold"
        )
    if kind == "ratio_at_most" and claim["metric"] in PER_EXAMPLE_SOURCES:  # its test has no test-set part
        raise ConfigError(
            f"{where}: kind ratio_at_most compares times; {claim['metric']} is a mean over test examples, whose "
            "comparison must carry the test set's draw: use kind paired (or equivalent)"
        )
    if kind == "below_latent_dim" and claim["metric"] not in COUNT_METRICS:
        raise ConfigError(
            f"{where}: kind below_latent_dim compares a count of directions with d; "
            f"{claim['metric']} is not one ({', '.join(COUNT_METRICS)})"
        )


def describe_side(side: dict) -> str:
    return side["model"] if side["probes"] == NO_PROBES else f"{side['model']} at K={side['probes']}"


def training_settings(
    dataset: str,
    dataset_settings: dict,
    model: str,
    model_settings: dict,
    latent_dim: int,
    probes: int,
    surrogate_point: str | None,
) -> dict:
    """What a sweep point sets of its runs' TrainConfig, every field but the seed, as the config spells it:
    the point's training.json, which its train job reads (`five train --settings`). Its text is what reruns the
    point's jobs: another order or spelling of the same settings would rerun every sweep."""
    settings = {
        "model": model,
        "dataset": dataset,
        "latent_dim": latent_dim,
        "probes": probes,
        "surrogate_point": surrogate_point,
        "beta": model_settings.get("beta"),
        **{key: dataset_settings.get(key) for key in TRAIN_SETTINGS},
    }
    if model in MODELS_WITH_FIXED_SIGMA:  # a data set's log_sigma_lr is for the models that learn σ
        del settings["log_sigma_lr"]
    return {key: value for key, value in settings.items() if value is not None}


EVALUATION_CONFIG = ("model_selection", "sigma")  # the config keys of how every run is evaluated


def evaluation_settings(row: dict, config: dict) -> dict:
    """How a sweep row's run is evaluated: its point's settings.json (with its training.json, what its
    evaluations depend on). `config`: the workflow config, or just its EVALUATION_CONFIG keys."""
    return {"importance_samples": row["importance_samples"], **{key: config[key] for key in EVALUATION_CONFIG}}


# what a prediction of a run's time does not depend on: it assumes every epoch is trained, and checkpoints and
# the choice of the evaluated one cost nothing it counts
NOT_ESTIMATED = ("patience", "checkpoint_every", "model_selection")
# how a data set's jobs compute their steps (never their results), which a predicted time depends on
JOB_STEP_SETTINGS = ("threads", "cuda_graph")


def job_steps(row: dict, config: dict) -> dict:
    """How a sweep row's train job computes its steps: its threads and CUDA graph mode, and torch.compile. A run's
    time depends on each. (The size of the pack it trains in too: an estimate states the pack its packed times
    are of, `packed_members`, and they serve only a pack of that size.)"""
    dataset = config["datasets"][row["dataset"]]
    return {
        "threads": dataset["threads"],
        "cuda_graph": cuda_graph_mode(dataset["cuda_graph"]),
        "compile": config["compile"],
    }


def estimate_config(config: dict) -> dict:
    """The workflow config's keys that estimate_key reads (what an aggregation needs of it to check an estimate)."""
    datasets = {
        name: {key: settings[key] for key in JOB_STEP_SETTINGS} for name, settings in config["datasets"].items()
    }
    return {key: config[key] for key in (*EVALUATION_CONFIG, "compile")} | {"datasets": datasets}


def device_kind(device) -> str:
    """`cpu` or `cuda` of a device as train.json and estimate.csv write it (cuda:0 → cuda); '' where none is."""
    return "" if device is None or device != device else str(device).split(":")[0]


def estimate_key(row: dict, config: dict) -> str:
    """A fingerprint of what a run's predicted time depends on besides the device: its training settings, how
    its job computes (job_steps) and how it is evaluated. An estimate (`five estimate`) is this run's only where
    it holds the run's key. `config`: the workflow config, or its estimate_config."""
    settings = json.loads(row["training_json"]) | evaluation_settings(row, config) | job_steps(row, config)
    return fingerprint({key: value for key, value in settings.items() if key not in NOT_ESTIMATED})


def check_training(training: dict, where: str) -> None:
    """The run's own check of its settings, while the workflow plans (a dry run), not in each job."""
    try:
        TrainConfig(**training)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def sweep_table(config: dict, results: str | None = None) -> pd.DataFrame:
    """One row per run: dataset, model, latent_dim, probes, surrogate_point, seed, beta, training settings,
    importance_samples, run_dir, and `training_json`: the point's training settings (training_settings) as the
    text of its training.json (a string column: Snakemake hashes the table, a parameter of the aggregation)."""
    results = results or experiment_dir(config)
    rows = []
    for dataset, settings in config["datasets"].items():
        for model, model_settings in config["models"].items():
            budgets, points = swept_probes(model, model_settings), swept_surrogate_points(model, model_settings)
            model_settings = model_settings or {}  # `vae:` with nothing after it is YAML null
            for latent_dim, probes, point in itertools.product(settings["latent_dims"], budgets, points):
                if probes > latent_dim:
                    raise ConfigError(
                        f"models.{model}.probes has K={probes} > latent dim {latent_dim} of "
                        f"datasets.{dataset}.latent_dims (the budget must satisfy K <= d)"
                    )
                training = training_settings(dataset, settings, model, model_settings, latent_dim, probes, point)
                check_training(training, f"datasets.{dataset} × models.{model}")
                training_json = json.dumps(training, indent=2)  # every seed of the point shares it
                for seed in sweep_seeds(config):
                    row = {
                        "dataset": dataset,
                        "model": model,
                        "latent_dim": latent_dim,
                        "probes": probes,
                        "surrogate_point": point,
                        "seed": seed,
                        "beta": model_settings.get("beta"),
                        **{key: settings.get(key) for key in TRAIN_SETTINGS},
                        "importance_samples": settings["importance_samples"],
                        "training_json": training_json,
                        "run_dir": run_folder(results, dataset, model_dir(model, point), latent_dim, probes, seed),
                    }
                    rows.append(row)
    table = pd.DataFrame(rows)
    duplicated = table["run_dir"].duplicated()
    if duplicated.any():
        raise ConfigError(
            f"the sweep lists a run twice: {table.loc[duplicated, 'run_dir'].iloc[0]} "
            "(repeated latent dims, budgets or seeds?)"
        )
    return table
