"""The configuration of one training run: a typed record whose invalid values fail when it is built."""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import typing
from dataclasses import dataclass

from five.base.errors import ConfigError
from five.base.files import check_apart

MODELS = ("vae", "fcvae", "fif", "five")
MODELS_WITH_PROBES = ("fif", "five")
ARCHITECTURES = ("mlp", "conv")
# Each named data set's default network (architecture, hidden width), what its runs use where a config leaves
# them out; an npz file's follows from its arrays' shape, known only once it is read.
DEFAULT_NETWORKS = {"digits": ("mlp", 256), "manifold": ("mlp", 128), "mnist": ("conv", 512), "cifar10": ("conv", 512)}
NPZ_HIDDEN_WIDTH = 512

# Spec §4 paper defaults.
DEFAULT_LR = 5e-4
DEFAULT_BATCH_SIZE = 128
DEFAULT_EPOCHS = 2000
DEFAULT_FIF_BETA = 10.0
DEFAULT_PROBES = 1  # spec §4: the Hutchinson budget K of fif and five
NO_PROBES = 0  # "not applicable": the budget K of the models without one (tables, run folders, configs)
# Adam's learning rate of ρ = log σ (models that learn σ). At the weights' rate ρ crawls: Adam divides each step
# by the root of its running mean of squared gradients, which remembers (β₂ = 0.999, ~1000 steps) the huge
# early ∂loss/∂ρ = D − ‖x − g(z)‖²/s of an untrained decoder, so later steps are a small fraction of lr.
# ρ is one scalar in log space: a step of 1e-2 moves σ by 1%, and its jitter near the optimum costs
# ~D·δρ² nats (< 0.1 nats for D = 784).
DEFAULT_LOG_SIGMA_LR = 1e-2
DEFAULT_IMPORTANCE_SAMPLES = 1000  # N of a run's IWAE test estimate (`five evaluate`, the workflow's schema)
# what a training step's cost depends on besides the data set (`five time-steps --points`; seeds share it)
STEP_COST_KEYS = ("model", "latent_dim", "probes", "surrogate_point", "batch_size", "hidden_width", "architecture")
STEP_TIMING_ROUNDS = 10  # rounds of a side-by-side step timing (`five time-steps`): each pairs every configuration
# when a run validates, stops and saves: never its weights (a resumed run may change them, five.run.train._replay)
SCHEDULE_SETTINGS = ("epochs", "eval_every", "patience", "checkpoint_every")
MODELS_WITH_FIXED_SIGMA = ("fif",)  # s = 1/(2β)
SURROGATE_POINTS = ("mean", "sample")  # where FIVE's decoder tangents J_g·v_k are taken (spec §1.4)
DEFAULT_SURROGATE_POINT = "mean"


def model_dir(model: str, surrogate_point: str | None) -> str:
    """A run's model as its folder and the tables name it: the model's name, with the FIVE estimator variant
    appended unless it is the default (so that runs made before the variant existed keep their folders)."""
    variant = surrogate_point if isinstance(surrogate_point, str) else None  # tables hold NaN for "none"
    return model if variant in (None, DEFAULT_SURROGATE_POINT) else f"{model}-{variant}"


def point_label(model: str, surrogate_point: str | None, latent_dim: int, probes: int) -> str:
    """A sweep point as progress lines and the timing tables name it, e.g. `five-sample d=2 K=2` (no K for a VAE)."""
    budget = f" K={probes}" if probes != NO_PROBES else ""
    return f"{model_dir(model, surrogate_point)} d={latent_dim}{budget}"


MODEL_SELECTIONS = ("best", "last")  # the checkpoint a run is evaluated at: its best validation epoch's, or its last
CUDA_GRAPH_MODES = ("auto", "on", "off")  # the training step as a CUDA graph (five.run.steps); auto: on CUDA
INT64_MAX = 2**63 - 1  # the integers a torch tensor holds
SEED_MAX = 2**64 - 1  # the seeds torch.manual_seed takes
FLOAT32_MAX = 3.4028234663852886e38  # training computes in float32
FLOAT32_TINY = 1.1754943508222875e-38  # its smallest normal number: below it a setting is 0 or loses its digits


def cuda_graph_mode(value: str | bool) -> str:
    """A config's `cuda_graph` as a mode: YAML reads a bare on/off as true/false."""
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


def short_integer(value: int) -> str:
    """An integer as an error message shows it: whole up to 20 digits, else its leading digits and exponent."""
    digits = str(abs(value))
    if len(digits) <= 20:
        return str(value)
    return f"{'-' if value < 0 else ''}{digits[0]}.{digits[1:4]}e+{len(digits) - 1}"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's result (the device does not, so it is not here)."""

    model: str
    dataset: str
    latent_dim: int
    probes: int | None = None  # Hutchinson budget K of fif and five (None: the default); NO_PROBES for the rest
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = DEFAULT_LR
    beta: float | None = None  # FIF reconstruction weight, fif only
    seed: int = 0
    architecture: str | None = None  # None: the data set's default (DEFAULT_NETWORKS; an npz file's: its shape)
    hidden_width: int | None = None  # None: the data set's default
    checkpoint_every: int = 1
    eval_every: int | None = None  # epochs between validation evaluations; None: epochs / 20
    patience: int | None = None  # stop after this many evaluations without a better validation NLL; None: off
    log_sigma_lr: float | None = None  # Adam lr of ρ = log σ; None: DEFAULT_LOG_SIGMA_LR (not for fif: σ fixed)
    surrogate_point: str | None = None  # five only: one of SURROGATE_POINTS (None: the default), spec §1.4

    def __post_init__(self):
        self._check_types()
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r} (choose from {', '.join(MODELS)})")
        if self.latent_dim < 1:
            raise ConfigError(f"--latent-dim must be >= 1, got {self.latent_dim}")
        self._resolve_probes()
        self._resolve_sigma_options()
        if self.dataset in DEFAULT_NETWORKS:  # the default spelled out or left out is one run, not two
            self._set_default("architecture", DEFAULT_NETWORKS[self.dataset][0])
            self._set_default("hidden_width", DEFAULT_NETWORKS[self.dataset][1])
        if self.model == "five":
            self._set_default("surrogate_point", DEFAULT_SURROGATE_POINT)
            if self.surrogate_point not in SURROGATE_POINTS:
                raise ConfigError(
                    f"--surrogate-point must be one of {', '.join(SURROGATE_POINTS)}, got {self.surrogate_point!r}"
                )
        elif self.surrogate_point is not None:
            raise ConfigError(
                f"--surrogate-point is a FIVE estimator variant and applies only to five, not {self.model}"
            )
        self._check_settings()

    def _check_types(self) -> None:
        """Each value of its field's type (a settings file or `--points` JSON is not typed by an option parser),
        as the plain Python type the option parser makes: a whole number where a float is expected becomes that
        float, a numpy integer an int; a bool is no number."""
        for name, kinds in field_types().items():
            value = getattr(self, name)
            if value is None and type(None) in kinds or isinstance(value, str) and str in kinds:
                continue
            if not isinstance(value, bool) and int in kinds and isinstance(value, numbers.Integral):
                if abs(value) > (SEED_MAX if name == "seed" else INT64_MAX):
                    raise ConfigError(
                        f"the setting {name} is {short_integer(value)}, beyond the 64-bit integers torch holds"
                    )
                object.__setattr__(self, name, int(value))
            elif not isinstance(value, bool) and float in kinds and isinstance(value, numbers.Real):
                try:
                    object.__setattr__(self, name, float(value))
                except OverflowError:
                    raise ConfigError(
                        f"the setting {name} must be a finite number, got one too large for a float"
                    ) from None
                if FLOAT32_MAX < abs(getattr(self, name)) < math.inf or 0 < abs(getattr(self, name)) < FLOAT32_TINY:
                    raise ConfigError(f"the setting {name} is {value}, beyond float32, the precision training runs in")
            else:
                wanted = " or ".join("null" if kind is type(None) else kind.__name__ for kind in kinds)
                raise ConfigError(f"the setting {name} must be {wanted}, got {value!r}")

    def _set_default(self, name: str, value) -> None:
        if getattr(self, name) is None:
            object.__setattr__(self, name, value)

    def _resolve_probes(self) -> None:
        """K: DEFAULT_PROBES where not given for fif/five; NO_PROBES (not applicable) for the other models."""
        if self.model not in MODELS_WITH_PROBES:
            if self.probes not in (None, NO_PROBES):
                raise ConfigError(f"--probes applies only to {' and '.join(MODELS_WITH_PROBES)}, not {self.model}")
            object.__setattr__(self, "probes", NO_PROBES)
            return
        self._set_default("probes", DEFAULT_PROBES)
        if not 1 <= self.probes <= self.latent_dim:
            raise ConfigError(
                f"--probes K={self.probes} is outside 1 <= K <= d={self.latent_dim} "
                "(the Hutchinson budget cannot exceed the latent dimension)"
            )

    def _resolve_sigma_options(self) -> None:
        """FIF's β (its σ is fixed by it), or the learning rate of log σ for the models that learn σ."""
        if self.model == "fif":
            self._set_default("beta", DEFAULT_FIF_BETA)
            if not 0 < self.beta < math.inf:
                raise ConfigError(f"--beta must be a finite number > 0, got {self.beta}")
        elif self.beta is not None:
            raise ConfigError(f"--beta is the FIF reconstruction weight and applies only to fif, not {self.model}")
        if self.model in MODELS_WITH_FIXED_SIGMA:
            if self.log_sigma_lr is not None:
                raise ConfigError(
                    f"--log-sigma-lr applies only to models that learn σ, not {self.model} (its s = 1/(2β) is fixed)"
                )
            return
        self._set_default("log_sigma_lr", DEFAULT_LOG_SIGMA_LR)
        if not 0 < self.log_sigma_lr < math.inf:
            raise ConfigError(f"--log-sigma-lr must be a finite number > 0, got {self.log_sigma_lr}")

    def _check_settings(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {self.seed}")
        for name in ("epochs", "batch_size", "checkpoint_every", "eval_every", "patience"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.lr < math.inf:
            raise ConfigError(f"--lr must be a finite number > 0, got {self.lr}")
        if self.architecture is not None and self.architecture not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {self.architecture!r} (choose from {', '.join(ARCHITECTURES)})")
        if self.hidden_width is not None and self.hidden_width < 1:
            raise ConfigError(f"--hidden-width must be >= 1, got {self.hidden_width}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
        missing = [name for name in REQUIRED_SETTINGS if values.get(name) is None]
        if missing:
            raise ConfigError(f"the setting(s) {', '.join(missing)} must be given (no default)")
        return cls(**values)

    @classmethod
    def resolved(cls, stored: dict) -> dict:
        """A stored configuration (train.json, a checkpoint) with its defaults resolved as a run's are (records
        of older versions spell a missing budget None); as stored where it is not a whole valid one."""
        try:
            return cls.from_dict(stored).to_dict()
        except (ConfigError, TypeError):
            return stored

    def matches(self, stored: dict) -> bool:
        """Whether a stored configuration is this run's; a key more or less is another run."""
        return set(stored) == set(self.to_dict()) and TrainConfig.resolved(stored) == self.to_dict()

    def same_up_to_seed(self, other: "TrainConfig") -> bool:
        """Whether the two runs differ in nothing but their seed (so they can be trained as one pack)."""
        return self.to_dict() | {"seed": None} == other.to_dict() | {"seed": None}

    def differences(self, other: "TrainConfig", ignore=SCHEDULE_SETTINGS) -> list[str]:
        """Keys whose values differ (those in `ignore` may change when a run is resumed: they decide when to
        stop, save or validate, never the weights)."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [k for k in mine if k not in ignore and mine[k] != theirs[k]]


@functools.cache
def field_types() -> dict[str, tuple[type, ...]]:
    """Each TrainConfig field's accepted types (`int | None` → (int, NoneType)), read once from its annotations."""
    return {
        name: typing.get_args(annotation) or (annotation,)
        for name, annotation in typing.get_type_hints(TrainConfig).items()
    }


# what a run's settings are (a sweep point's training.json, `five train`'s options): every field but the seed
SETTING_FIELDS = tuple(field.name for field in dataclasses.fields(TrainConfig) if field.name != "seed")
REQUIRED_SETTINGS = tuple(
    field.name for field in dataclasses.fields(TrainConfig) if field.default is dataclasses.MISSING
)


def check_packable(configs: list[TrainConfig], out_dirs: list) -> None:
    """Runs trained together as one pack: one configuration up to the seed, each seed once in a folder of its own."""
    if len(configs) != len(out_dirs) or not configs:
        raise ConfigError(f"one run folder per seed is needed: {len(configs)} seeds, {len(out_dirs)} folders")
    if len({config.seed for config in configs}) < len(configs):
        raise ConfigError(f"each seed once: got {', '.join(str(config.seed) for config in configs)}")
    check_apart(out_dirs, "--out")  # each seed its own run folder
    if not all(config.same_up_to_seed(configs[0]) for config in configs):
        raise ConfigError("only runs of one configuration (up to the seed) are trained together")
