"""The four models: shared trunks (five.model.nets), a model-specific head, and the objective of spec §1.

Each model exposes `loss_terms(x, generator)` for training and `posterior(x)` (a Gaussian proposal) for the
one evaluation code path of spec §2–3.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from five.base.config import MODELS_WITH_PROBES, TrainConfig
from five.base.errors import ConfigError
from five.data.datasets import Dataset
from five.model import objectives
from five.model.estimators import (
    GaussianPosterior,
    choose_encoder_product,
    encoder_jacobian,
    jacobian_covariance_scale_tril,
    probe_vectors,
)
from five.model.nets import build_trunks

INITIAL_SIGMA = 0.1  # spec §5
CONTINUOUS_LOG_SIGMA_FLOOR = math.log(1e-3)  # continuous data have no quantisation scale; this only guards s → 0


def log_sigma_floor(discrete_levels: int | None) -> float:
    """Spec §5: ρ ≥ log(1/(L·√12)), the std of the dequantisation noise (≈ −6.8 for 8-bit data)."""
    if discrete_levels is None:
        return CONTINUOUS_LOG_SIGMA_FLOOR
    return math.log(1.0 / (discrete_levels * math.sqrt(12.0)))


class Model(nn.Module):
    """Encoder f = head ∘ trunk, decoder g, and the decoder noise scale ρ = log σ (learned unless fixed)."""

    name = ""
    posterior_scales_with_sigma = False  # True where q(z|x)'s covariance is s·(something), as for FIF and FIVE
    compiled = False  # set by compile_objective
    members = 1  # models trained side by side as one (five.model.pack); rows of a batch come in member blocks
    noise_batch_dims: tuple[int, ...] = (0,)  # the example dimension of each tensor draw_noise returns

    def __init__(self, config: TrainConfig, dataset: Dataset):
        super().__init__()
        self.config = config
        self.latent_dim = config.latent_dim
        self.example_shape = dataset.example_shape
        self.architecture = config.architecture or dataset.default_architecture
        width = config.hidden_width or dataset.default_hidden_width
        self.encoder_trunk, self.decoder = build_trunks(self.architecture, self.example_shape, self.latent_dim, width)
        self.head = nn.Linear(width, self.head_dim())
        self.log_sigma_floor = log_sigma_floor(dataset.discrete_levels)
        self.log_sigma = nn.Parameter(torch.tensor(math.log(INITIAL_SIGMA)))

    def head_dim(self) -> int:
        return self.latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder_trunk(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def row_log_sigma(self, x: torch.Tensor) -> torch.Tensor:
        """ρ for the rows of x: the scalar, or in a pack each member's ρ repeated over its block of rows."""
        return self.log_sigma if self.members == 1 else self.log_sigma.repeat_interleave(x.shape[0] // self.members)

    def member_losses(self, per_example: torch.Tensor) -> torch.Tensor:
        """Each member's mean loss over its rows, (members,). The optimiser minimises their *sum*, so that each
        member's gradient is its own (a mean over members would scale every gradient by 1/M)."""
        return per_example.reshape(self.members, -1).mean(1)

    @property
    def learns_sigma(self) -> bool:
        """Whether σ is trained (VAE, FC-VAE, FIVE) or part of the model's definition (FIF: s = 1/(2β))."""
        return isinstance(self.log_sigma, nn.Parameter)

    def project_parameters(self) -> None:
        """Keep ρ above its floor after each optimiser step (a projection, so ρ stays learnable)."""
        if self.learns_sigma:
            with torch.no_grad():
                self.log_sigma.clamp_(min=self.log_sigma_floor)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor, log_sigma: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x|z) + log p(z), the numerator of the importance weights (§2), at the model's ρ or `log_sigma`."""
        x_hat = self.decode(z.to(x.dtype))
        log_sigma = self.log_sigma if log_sigma is None else log_sigma
        return objectives.decoder_log_likelihood(x, x_hat, log_sigma) + objectives.prior_log_density(z)

    def set_log_sigma(self, value: float) -> None:
        """Replace ρ (an evaluation at a σ fitted on validation data, spec §2)."""
        with torch.no_grad():
            self.log_sigma.fill_(value)

    def loss_terms(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The objective's named per-example terms; its randomness is drawn here, outside the objective,
        so that the objective is a pure function of tensors (and can be compiled)."""
        return self.objective(x, *self.draw_noise(x, generator))

    def draw_noise(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def objective(self, x: torch.Tensor, *noise: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def compile_objective(self) -> None:
        """torch.compile the objective (fuses the elementwise work around the JVPs; same math), once."""
        if not self.compiled:
            self.compiled = True
            self.objective = torch.compile(self.objective)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the loss's backward differentiates: the parameters only, so that autograd skips the gradient
        w.r.t. the input that a reverse-mode encoder product makes x require."""
        return [p for p in self.parameters() if p.requires_grad]

    def facts(self) -> dict:
        """How this model computes its objective, for train.json (not part of the configuration: every choice
        here gives the same loss and gradient)."""
        return {}

    def posterior(self, x: torch.Tensor) -> GaussianPosterior:
        raise NotImplementedError

    def posterior_mean(self, x: torch.Tensor) -> torch.Tensor:
        """E_q[z|x] (μ or f(x)), used for active units and reconstructions (§3)."""
        return self.encode(x)[..., : self.latent_dim]

    def _randn(self, shape, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


class VAE(Model):
    """§1.1: diagonal Gaussian posterior, head (μ, ℓ)."""

    name = "vae"

    def head_dim(self) -> int:
        return 2 * self.latent_dim

    def split_head(self, x):
        mu, log_std = self.encode(x).split(self.latent_dim, dim=-1)
        return mu, log_std

    def draw_noise(self, x, generator):
        return (self._randn((x.shape[0], self.latent_dim), generator, x),)

    def objective(self, x, eps):
        mu, log_std = self.split_head(x)
        return objectives.vae_loss(x, mu, log_std, self.decode, self.row_log_sigma(x), eps)

    def posterior(self, x):
        mu, log_std = self.split_head(x)
        return GaussianPosterior(mu.double(), torch.diag_embed(torch.exp(log_std.double())))


class FCVAE(Model):
    """§1.2: full covariance via a Cholesky factor, head (μ, ℓ, m); the off-diagonal head starts at zero."""

    name = "fcvae"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        with torch.no_grad():
            self.head.weight[2 * self.latent_dim :].zero_()
            self.head.bias[2 * self.latent_dim :].zero_()

    def head_dim(self) -> int:
        d = self.latent_dim
        return 2 * d + d * (d - 1) // 2

    def split_head(self, x):
        d = self.latent_dim
        return self.encode(x).split([d, d, d * (d - 1) // 2], dim=-1)

    def draw_noise(self, x, generator):
        return (self._randn((x.shape[0], self.latent_dim), generator, x),)

    def objective(self, x, eps):
        mu, log_diag, off_diag = self.split_head(x)
        return objectives.fcvae_loss(x, mu, log_diag, off_diag, self.decode, self.row_log_sigma(x), eps)

    def posterior(self, x):
        mu, log_diag, off_diag = self.split_head(x)
        return GaussianPosterior(mu.double(), objectives.cholesky_factor(log_diag.double(), off_diag.double()))


class FIVE(Model):
    """§1.4: q(z|x) = N(f(x), s·J_f J_fᵀ); head f(x) ∈ ℝ^d; ρ learned."""

    name = "five"
    posterior_scales_with_sigma = True  # N(f(x), s·J_f J_fᵀ)
    noise_batch_dims = (0, 1)  # u or ε (B, …), the probe vectors v (K, B, d)
    forced_encoder_product: str | None = None  # benchmarks time both; training lets the budget decide

    @property
    def encoder_product(self) -> str:
        """Forward or reverse mode for the surrogate's encoder product, chosen by the budget (same gradient)."""
        return self.forced_encoder_product or choose_encoder_product(
            self.name, self.config.probes, self.architecture, self.config.surrogate_point, self.compiled
        )

    def facts(self) -> dict:
        return {"encoder_product": self.encoder_product}

    def draw_noise(self, x, generator):
        """u (FIVE's sampling noise) or ε (FIF's training noise), then the K probe vectors: drawn in this order
        from the run's generator (a resumed run and a packed member draw the same numbers)."""
        noise = self._randn(x.shape, generator, x)
        return noise, probe_vectors(x.shape[0], self.latent_dim, self.config.probes, generator, x.device)

    def objective(self, x, u, v):
        return objectives.five_loss(
            x, self.encode, self.decode, self.row_log_sigma(x), u, v, self.config.surrogate_point, self.encoder_product
        )

    def posterior(self, x):
        """§2: N(f(x), s·C), C = J_f J_fᵀ from the exact Jacobian, Cholesky in float64."""
        with torch.enable_grad():  # jacrev needs autograd even when evaluation runs under no_grad
            jacobian = encoder_jacobian(self.encode, x)
        mean = self.encode(x)
        return GaussianPosterior(mean.double(), jacobian_covariance_scale_tril(jacobian.detach(), self.log_sigma))


class FIF(FIVE):
    """§1.3: free-form injective flow; as a density model its noise is fixed at s = 1/(2β) (§1.4, §2)."""

    name = "fif"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        del self.log_sigma
        self.register_buffer("log_sigma", torch.tensor(-0.5 * math.log(2 * config.beta)))

    def objective(self, x, noise, v):
        x_noisy = x + objectives.FIF_TRAIN_NOISE * noise
        return objectives.fif_loss(x_noisy, self.encode, self.decode, v, self.config.beta, self.encoder_product)


MODEL_CLASSES = {cls.name: cls for cls in (VAE, FCVAE, FIF, FIVE)}


TRAINING_COPIES = 4  # weights, gradients and Adam's two moments, float32 each


def device_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1]
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def build_model(config: TrainConfig, dataset: Dataset, device: torch.device | None = None, members: int = 1) -> Model:
    """The model of `config` for `dataset`, refused in one line, before anything is allocated, where a layer is
    beyond torch's sizes or (with `device`) the parameters alone (with gradients and Adam's state) of the
    `members` trained packed exceed the device's memory."""
    if config.model in MODELS_WITH_PROBES and config.latent_dim > dataset.dim:
        raise ConfigError(
            f"--latent-dim {config.latent_dim} exceeds the data dimension D = {dataset.dim} of "
            f"{dataset.name}: {config.model}'s posterior N(f(x), s·J_f J_fᵀ) would be degenerate"
        )
    width = config.hidden_width or dataset.default_hidden_width
    described = f"the {config.model} model (latent dim {config.latent_dim}, hidden width {width})"
    try:
        with torch.device("meta"):  # shapes only: counts the parameters without allocating them
            count = sum(p.numel() for p in MODEL_CLASSES[config.model](config, dataset).parameters())
    except (TypeError, RuntimeError) as error:  # a layer size beyond what torch can index; else a bug, shown
        if "overflow" not in str(error).lower():
            raise
        raise ConfigError(f"{described} cannot be built: {str(error).splitlines()[0]}") from None
    if device is not None:
        needed, available = TRAINING_COPIES * 4 * count * members, device_memory_bytes(device)
        if needed > available:
            packed = f" (a pack of {members} seeds)" if members > 1 else ""
            raise ConfigError(
                f"{described} has {count:,} parameters: training{packed} needs {needed / 2**30:,.1f} GiB for "
                f"them alone, the {device.type} has {available / 2**30:,.1f} GiB"
            )
    return MODEL_CLASSES[config.model](config, dataset)
