"""The straightforward formulation of the FIF/FIVE objectives, as the FIF paper describes the estimator:
a Python loop over the K probes, each with its own decoder JVP and a reverse-mode encoder VJP kept
differentiable (create_graph=True). Same loss and gradients as five.model.objectives (checked in
tests/test_benchmarks.py); written here only as the speed baseline that five's batched formulation is
measured against on the same networks."""

from __future__ import annotations

import torch
from torch.func import jvp

from five.model import objectives


def per_probe_surrogate(model, x: torch.Tensor, z: torch.Tensor, at: torch.Tensor, v: torch.Tensor):
    """S = (1/K) Σ_k (v_kᵀ J_f(x)) · SG(J_g(at) v_k), one probe vector v_k of v (K, B, d) at a time; `x`
    requires grad, z = f(x)."""
    surrogate = 0.0
    for v_k in v:
        _, decoder_tangent = jvp(model.decode, (at.detach(),), (v_k,))
        (encoder_vjp,) = torch.autograd.grad(z, x, v_k, create_graph=True)
        surrogate = surrogate + (encoder_vjp * decoder_tangent.detach()).flatten(1).sum(-1)
    return surrogate / v.shape[0]


def reference_fif_objective(model, x, noise, v):
    x_noisy = (x + objectives.FIF_TRAIN_NOISE * noise).requires_grad_()
    z = model.encode(x_noisy)
    reconstruction = objectives.squared_error(x_noisy, model.decode(z))
    surrogate = per_probe_surrogate(model, x_noisy, z, z, v)
    return {"loss": model.config.beta * reconstruction + 0.5 * (z**2).sum(-1) - surrogate}


def reference_five_objective(model, x, u, v):
    x = x.detach().requires_grad_()
    mean, sampling_tangent = jvp(model.encode, (x,), (u,))
    z = mean + torch.exp(model.log_sigma) * sampling_tangent
    surrogate = per_probe_surrogate(model, x, mean, mean, v)
    return objectives.five_terms(x, z, model.decode(z), surrogate, model.log_sigma)


REFERENCE_OBJECTIVES = {"fif": reference_fif_objective, "five": reference_five_objective}
