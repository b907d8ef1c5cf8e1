"""Benchmarks of five: prints every figure and writes them to a CSV (device, torch version, threads).

    .venv/bin/python -m benchmarks.run            # the full set (about 10 minutes on 2 CPU cores)
    .venv/bin/python -m benchmarks.run --quick    # d = 16 and the MLP only, fewer repetitions

Timings are ratios to the diagonal VAE measured in the same run with interleaved repetitions (medians),
so they compare across machines better than seconds. Targets (CPU, MNIST-size MLP, d = 16): FIF ≤ 1.7× and
FIVE ≤ 2.0× the VAE step at K = 1 (compiled: 1.5× and 1.7×; conv: FIVE ≤ 2.0×); each extra probe ≤ 0.4 VAE
steps; faster than the per-probe reference formulation at every K; `snakemake -n` on 1,000 jobs < 5 s;
aggregation of 1,000 runs < 5 s; tracking < 2% of training time.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from five.run.timing import make_step, slope, synthetic_dataset, time_steps

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = (1, 2, 4, 8, 16)
ARCHITECTURES = {"mlp": ((1, 28, 28), "mlp"), "conv": ((1, 28, 28), "conv")}


class Report:
    """Collects figures, prints each as it comes, writes them all to CSV at the end."""

    def __init__(self, device: torch.device):
        self.rows: list[dict] = []
        self.context = {
            "device": str(device),
            "device_name": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
        }

    def add(self, section: str, name: str, value: float, unit: str, target: str = "") -> None:
        self.rows.append({"section": section, "name": name, "value": value, "unit": unit, "target": target})
        verdict = ""
        if target:
            op, bound = target[:1], float(target[1:])
            verdict = "  (met)" if (value <= bound if op == "<" else value >= bound) else "  (NOT met)"
        print(f"  {name:<44} {value:10.3f} {unit}{'  target ' + target if target else ''}{verdict}", flush=True)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=[*self.context, "section", "name", "value", "unit", "target"])
            writer.writeheader()
            for row in self.rows:
                writer.writerow(self.context | row)
        print(f"\nwrote {path}")


def step_ratios(report: Report, device: torch.device, dims, architectures, repeats: int, inner: int) -> None:
    print("\n1-2. training step time / VAE step (medians of interleaved repetitions), extra-probe cost")
    for arch in architectures:
        shape, kind = ARCHITECTURES[arch]
        dataset = synthetic_dataset(shape, kind)
        for d in dims:
            budgets = [k for k in BUDGETS if k <= d]
            steps = {
                "vae": make_step("vae", dataset, d, None, device),
                "fcvae": make_step("fcvae", dataset, d, None, device),
            }
            for model in ("fif", "five"):
                for k in budgets:
                    steps[f"{model} K={k}"] = make_step(model, dataset, d, k, device)
            seconds = time_steps(steps, repeats, inner, device)
            vae = seconds["vae"]
            report.add("step", f"{arch} d={d} vae step", vae * 1000, "ms")
            for name, value in seconds.items():
                if name == "vae":
                    continue
                target = ""
                if arch == "mlp" and d == 16 and name in ("fif K=1", "five K=1"):
                    target = "<1.7" if name.startswith("fif") else "<2.0"
                if arch == "conv" and d == 16 and name == "five K=1":
                    target = "<2.0"
                report.add("step", f"{arch} d={d} {name} / vae", value / vae, "x", target)
            for model in ("fif", "five"):
                ratios = [seconds[f"{model} K={k}"] / vae for k in budgets]
                per_probe = slope(budgets, ratios) if len(budgets) > 1 else float("nan")
                target = "<0.4" if arch == "mlp" and d == 16 else ""
                report.add("probe", f"{arch} d={d} {model} extra probe", per_probe, "VAE steps", target)


def reference_steps(dataset, device: torch.device, products: bool) -> dict:
    """The steps reference_comparison times: the VAE's; FIF's and FIVE's at every K, ours, the reference's and
    (`products`) both encoder products forced; FIVE's at the sample."""
    from benchmarks.reference import REFERENCE_OBJECTIVES

    steps = {"vae": make_step("vae", dataset, 16, None, device)}
    for model in ("fif", "five"):
        for k in BUDGETS:
            steps[f"{model} K={k}"] = make_step(model, dataset, 16, k, device)
            steps[f"{model} K={k} reference"] = make_step(
                model, dataset, 16, k, device, objective=REFERENCE_OBJECTIVES[model]
            )
            for product in ("forward", "reverse") if products else ():
                steps[f"{model} K={k} {product}"] = make_step(model, dataset, 16, k, device, encoder_product=product)
    for k in BUDGETS:  # the estimator variant of method.md §1.4 (decoder tangents at the sample)
        steps[f"five-sample K={k}"] = make_step("five", dataset, 16, k, device, surrogate_point="sample")
    return steps


def reference_comparison(
    report: Report, device: torch.device, architectures, repeats: int, inner: int, products: bool = True
) -> None:
    """five's objectives against the straightforward per-probe formulation (benchmarks/reference.py) on the
    same networks, d = 16, every K; with `products`, also both encoder products forced (the measurements
    five.model.estimators.choose_encoder_product decides by)."""
    from five.model.estimators import choose_encoder_product

    print("\n1c. five vs the per-probe reference formulation (d = 16; ratios to the VAE step; speed-up = ref/five)")
    for arch in architectures:
        shape, kind = ARCHITECTURES[arch]
        dataset = synthetic_dataset(shape, kind)
        steps = reference_steps(dataset, device, products)
        seconds = time_steps(steps, repeats, inner, device)
        vae = seconds["vae"]
        for model in ("fif", "five"):
            for k in BUDGETS:
                ours, reference = seconds[f"{model} K={k}"] / vae, seconds[f"{model} K={k} reference"] / vae
                product = choose_encoder_product(model, k, arch, "mean")
                report.add("reference", f"{arch} d=16 {model} K={k} five ({product}) / vae", ours, "x")
                report.add("reference", f"{arch} d=16 {model} K={k} reference / vae", reference, "x")
                report.add(
                    "reference", f"{arch} d=16 {model} K={k} speed-up over reference", reference / ours, "x", ">1"
                )
                if products:
                    for forced in ("forward", "reverse"):
                        report.add(
                            "products",
                            f"{arch} d=16 {model} K={k} {forced} mode / vae",
                            seconds[f"{model} K={k} {forced}"] / vae,
                            "x",
                        )
        for k in BUDGETS:
            report.add(
                "reference",
                f"{arch} d=16 five-sample K={k} ({choose_encoder_product('five', k, arch, 'sample')}) / vae",
                seconds[f"five-sample K={k}"] / vae,
                "x",
            )


def compiled_step_ratios(report: Report, device: torch.device, repeats: int, inner: int) -> None:
    print("\n1-2b. the same with torch.compile on every objective (mlp, d = 16)")
    dataset = synthetic_dataset((1, 28, 28), "mlp")
    steps = {"vae": make_step("vae", dataset, 16, None, device, compile_objective=True)}
    for model in ("fif", "five"):
        for k in BUDGETS:
            steps[f"{model} K={k}"] = make_step(model, dataset, 16, k, device, compile_objective=True)
    seconds = time_steps(steps, repeats, inner, device)
    vae = seconds["vae"]
    report.add("compiled", "mlp d=16 compiled vae step", vae * 1000, "ms")
    for name, value in seconds.items():
        if name != "vae":
            target = {"fif K=1": "<1.5", "five K=1": "<1.7"}.get(name, "")
            report.add("compiled", f"mlp d=16 compiled {name} / compiled vae", value / vae, "x", target)
    for model in ("fif", "five"):
        per_probe = slope(list(BUDGETS), [seconds[f"{model} K={k}"] / vae for k in BUDGETS])
        report.add("compiled", f"mlp d=16 compiled {model} extra probe", per_probe, "VAE steps", "<0.4")


def graph_step_times(report: Report, device: torch.device, repeats: int, inner: int) -> None:
    """Eager against CUDA-graph steps (five.run.steps) of every model, K = 1 and 8, MLP and conv, d = 16, batch 128:
    milliseconds per step, the graph's speed-up, and each model's ratio to the VAE within the same mode."""
    print("\n1d. eager vs CUDA graph (d = 16, batch 128): ms per step, speed-up, ratio to the VAE in the same mode")
    if device.type != "cuda":
        print("  skipped: CUDA graphs need a CUDA device")
        return
    targets = {("mlp", "vae"): "<0.4", ("conv", "vae"): "<1.0"}
    for arch in ARCHITECTURES:
        shape, kind = ARCHITECTURES[arch]
        dataset = synthetic_dataset(shape, kind)
        names = ["vae", "fcvae"] + [f"{model} K={k}" for model in ("fif", "five") for k in (1, 8)]
        steps = {}
        for name in names:
            model, _, budget = name.partition(" K=")
            for graphed in (False, True):
                steps[(name, graphed)] = make_step(
                    model, dataset, 16, int(budget) if budget else None, device, cuda_graph=graphed
                )
        seconds = time_steps(steps, repeats, inner, device)
        for name in names:
            eager, graph = seconds[(name, False)], seconds[(name, True)]
            report.add("graph", f"{arch} d=16 {name} eager step", eager * 1000, "ms")
            report.add("graph", f"{arch} d=16 {name} graph step", graph * 1000, "ms", targets.get((arch, name), ""))
            report.add("graph", f"{arch} d=16 {name} graph speed-up", eager / graph, "x")
            if name != "vae":
                target = "<2.0" if name == "five K=1" else ""
                report.add("graph", f"{arch} d=16 {name} / vae, graph", graph / seconds[("vae", True)], "x", target)
                report.add("graph", f"{arch} d=16 {name} / vae, eager", eager / seconds[("vae", False)], "x")


def compiled_graph_step_times(report: Report, device: torch.device, repeats: int, inner: int) -> None:
    """The graphed step with torch.compile on the objective as well (`compile: true`), MLP d = 16: compiling
    fuses the elementwise kernels that a graph still runs one by one."""
    print("\n1e. CUDA graph with torch.compile on the objective (mlp, d = 16, batch 128)")
    if device.type != "cuda":
        print("  skipped: CUDA graphs need a CUDA device")
        return
    dataset = synthetic_dataset((1, 28, 28), "mlp")
    steps = {
        name: make_step(model, dataset, 16, probes, device, compile_objective=compiled, cuda_graph=True)
        for name, model, probes, compiled in (
            ("vae", "vae", None, False),
            ("vae compiled", "vae", None, True),
            ("five K=1", "five", 1, False),
            ("five K=1 compiled", "five", 1, True),
        )
    }
    seconds = time_steps(steps, repeats, inner, device)
    for name, value in seconds.items():
        report.add("graph", f"mlp d=16 {name} graph step", value * 1000, "ms", "<0.4" if name.startswith("vae") else "")
    report.add(
        "graph",
        "mlp d=16 five K=1 / vae, graph, compiled",
        seconds["five K=1 compiled"] / seconds["vae compiled"],
        "x",
        "<2.0",
    )


def cudnn_autotuned_graph_times(report: Report, device: torch.device, repeats: int, inner: int) -> None:
    """Conv graph steps with cuDNN's autotuner (`torch.backends.cudnn.benchmark`) off and on: the capture's
    warm-up would let it pick the fastest convolution algorithms for the run's shapes."""
    print("\n1f. conv graph steps, cuDNN autotuner off / on (d = 16, batch 128)")
    if device.type != "cuda":
        print("  skipped: CUDA graphs need a CUDA device")
        return
    dataset = synthetic_dataset(*ARCHITECTURES["conv"])
    steps = {}
    for tuned in (False, True):
        torch.backends.cudnn.benchmark = tuned
        for name, model, probes in (("vae", "vae", None), ("five K=1", "five", 1), ("fif K=1", "fif", 1)):
            steps[(name, tuned)] = make_step(model, dataset, 16, probes, device, cuda_graph=True)
    torch.backends.cudnn.benchmark = False
    seconds = time_steps(steps, repeats, inner, device)
    for (name, tuned), value in seconds.items():
        report.add(
            "graph", f"conv d=16 {name} graph step, cudnn autotuner {'on' if tuned else 'off'}", value * 1000, "ms"
        )


def packed_step_times(report: Report, device: torch.device, repeats: int, inner: int) -> None:
    """Per-member step time of packs of seeds (five.model.pack): M members as one batched model, eager and (on CUDA)
    as a CUDA graph; d = 16, batch 128 per member. Speed-up = the pack of one's time per member / this one's."""
    packs, modes = ((1, 3, 8, 16), (False, True)) if device.type == "cuda" else ((1, 3), (False,))
    print(f"\n1g. packed seeds: ms per member and step (d = 16, batch 128 per member), packs {packs}")
    for arch in ARCHITECTURES:
        dataset = synthetic_dataset(*ARCHITECTURES[arch])
        steps = {}
        for name in ("vae", "fif K=1", "fif K=8", "five K=1", "five K=8"):
            model, _, budget = name.partition(" K=")
            for graphed in modes:
                for pack in packs if graphed or device.type != "cuda" else packs[:2]:
                    steps[(name, graphed, pack)] = make_step(
                        model, dataset, 16, int(budget) if budget else None, device, cuda_graph=graphed, pack=pack
                    )
        seconds = time_steps(steps, repeats, inner, device)
        for (name, graphed, pack), value in seconds.items():
            mode = "graph" if graphed else "eager"
            target = "<1.2" if (arch, name, graphed, pack) == ("mlp", "vae", False, 3) and device.type == "cuda" else ""
            report.add("packed", f"{arch} d=16 {name} {mode} pack {pack} per member", value / pack * 1000, "ms", target)
            if pack > 1:
                report.add(
                    "packed",
                    f"{arch} d=16 {name} {mode} pack {pack} speed-up per member",
                    seconds[(name, graphed, 1)] / (value / pack),
                    "x",
                )


def packed_trunk_times(report: Report, device: torch.device, repeats: int, inner: int) -> None:
    """Where a pack's time goes on the GPU: forward + backward of the networks alone (encoder trunk and decoder,
    d = 16, batch 128 per member), each replayed as a CUDA graph, solo against a pack of 3 (batched matmuls,
    grouped convolutions); ms per member."""
    print("\n1h. networks alone (forward + backward as a CUDA graph): ms per member, solo vs pack of 3")
    if device.type != "cuda":
        print("  skipped: CUDA graphs need a CUDA device")
        return
    from five.base.config import TrainConfig
    from five.model.models import build_model
    from five.model.pack import pack_models

    for arch in ARCHITECTURES:
        dataset = synthetic_dataset(*ARCHITECTURES[arch])
        config = TrainConfig(model="vae", dataset="bench", latent_dim=16, hidden_width=512)
        for pack in (1, 3):
            members = [build_model(config, dataset).to(device) for _ in range(pack)]
            model = members[0] if pack == 1 else pack_models(members)
            x = torch.rand(128 * pack, *dataset.example_shape, device=device)
            for part, run in (
                ("encoder", lambda: model.encoder_trunk(x)),
                ("decoder", lambda: model.decoder(torch.randn(128 * pack, 16, device=device))),
            ):
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    for _ in range(2):
                        run().square().sum().backward()
                torch.cuda.current_stream().wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    run().square().sum().backward()
                seconds = time_steps({"part": graph.replay}, repeats, inner * 10, device)["part"]
                report.add(
                    "packed",
                    f"{arch} {part} forward+backward graph, pack {pack}, per member",
                    seconds / pack * 1000,
                    "ms",
                )


class MemberObjective(torch.nn.Module):
    """A model's mean training loss as its forward (what torch.func.functional_call calls)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, *noise):
        return self.model.objective(x, *noise)["loss"].mean()


def vmap_pack_step(members: list, lr: float):
    """Issue 17's other packing: the members' parameters stacked by torch.func.stack_module_state and one member's
    loss vmapped over them (x and each noise tensor with a leading member dimension); Adam on the stacked
    tensors. A closure (x, noise) → each member's loss."""
    import copy

    from torch.func import functional_call, stack_module_state, vmap

    objective = MemberObjective(copy.deepcopy(members[0]))
    params, buffers = stack_module_state([MemberObjective(member) for member in members])
    optimizer = torch.optim.Adam(params.values(), lr=lr)
    losses = vmap(lambda p, b, x, *noise: functional_call(objective, (p, b), (x, *noise)))

    def step(x, noise):
        optimizer.zero_grad(set_to_none=True)
        loss = losses(params, buffers, x, *noise)
        loss.sum().backward()
        optimizer.step()
        return loss.detach()

    step.params = params
    return step


def packed_vmap_times(report: Report, device: torch.device, repeats: int, inner: int) -> None:
    """The two ways issue 17 names to pack M = 3 seeds, timed side by side on the same members and batches: the
    batched layers of five.model.pack (one bmm per linear layer) against stack_module_state + vmap over one
    member's objective. MLP, d = 16, batch 128 per member, the same noise for both; the first step's losses
    must agree (else an error, not a timing). ms per pack step."""
    import copy

    from five.base.config import TrainConfig
    from five.model.models import build_model
    from five.model.pack import pack_models
    from five.run.steps import optimiser_step

    print("\n1i. packing by batched layers vs by vmap: ms per step of a pack of 3 (MLP, d = 16, batch 128 per member)")
    dataset = synthetic_dataset(*ARCHITECTURES["mlp"])
    generator = torch.Generator(device=device).manual_seed(0)
    for name in ("vae", "fcvae", "fif K=1", "five K=1"):
        model_name, _, budget = name.partition(" K=")
        config = TrainConfig(model=model_name, dataset="bench", latent_dim=16, probes=int(budget) if budget else None)
        members = []
        for seed in range(3):
            torch.manual_seed(seed)
            members.append(build_model(config, dataset).to(device))
        x = torch.rand(3, 128, *dataset.example_shape, device=device)
        noise = [member.draw_noise(x[m], generator) for m, member in enumerate(members)]
        packed = pack_models([copy.deepcopy(member) for member in members])
        optimizer = torch.optim.Adam(packed.parameters(), lr=config.lr)
        joined = tuple(torch.cat(parts, dim) for parts, dim in zip(zip(*noise), packed.noise_batch_dims))
        stacked = [torch.stack(parts) for parts in zip(*noise)]
        by_layers = lambda: optimiser_step(packed, optimizer, x.flatten(0, 1), joined)  # noqa: E731
        first_losses = by_layers()
        try:
            by_vmap = vmap_pack_step(members, config.lr)
            vmap_losses = by_vmap(x, stacked)
        except (RuntimeError, ValueError) as error:  # torch.func's limits, reported as found
            print(f"  {name}: does not run under vmap: {str(error).splitlines()[0][:110]}")
            continue
        if not torch.allclose(first_losses, vmap_losses, rtol=1e-4):
            raise AssertionError(f"{name}: the two packings disagree: {first_losses} against {vmap_losses}")
        seconds = time_steps({"layers": by_layers, "vmap": lambda: by_vmap(x, stacked)}, repeats, inner, device)
        report.add("packed-vmap", f"mlp d=16 {name} pack 3, batched layers", seconds["layers"] * 1000, "ms")
        report.add("packed-vmap", f"mlp d=16 {name} pack 3, vmap", seconds["vmap"] * 1000, "ms")


def outside_model_share(report: Report, device: torch.device, repeats: int, inner: int) -> None:
    print("\n3. share of step time outside the model (batch indexing, dequantisation) ")
    dataset = synthetic_dataset((1, 28, 28), "mlp")
    for model, probes in (("vae", None), ("five", 1)):
        steps = {
            "full": make_step(model, dataset, 16, probes, device, include_data=True),
            "model only": make_step(model, dataset, 16, probes, device, include_data=False),
        }
        seconds = time_steps(steps, repeats, inner, device)
        share = max(0.0, 1 - seconds["model only"] / seconds["full"])
        report.add("overhead", f"mlp d=16 {model} data preparation share", 100 * share, "%")


def iwae_throughput(report: Report, device: torch.device, samples: int = 1000) -> None:
    print("\n4. IWAE evaluation throughput (examples × importance samples per second)")
    from five.base.config import TrainConfig
    from five.data.datasets import dequantize
    from five.model.estimators import iwae_log_likelihood
    from five.model.models import build_model

    dataset = synthetic_dataset((1, 28, 28), "mlp")
    x = dequantize(dataset.split("test")[:64].to(device), 256, torch.Generator(device=device).manual_seed(0))
    for model_name, probes in (("vae", None), ("fcvae", None), ("fif", 1), ("five", 1)):
        model = (
            build_model(
                TrainConfig(model=model_name, dataset="bench", latent_dim=16, probes=probes, hidden_width=512), dataset
            )
            .to(device)
            .eval()
        )
        generator = torch.Generator(device=device).manual_seed(0)
        started = time.perf_counter()
        with torch.no_grad():
            iwae_log_likelihood(x, model.posterior(x), model.log_joint, samples, generator, chunk_size=256)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rate = x.shape[0] * samples / (time.perf_counter() - started)
        report.add("iwae", f"mlp d=16 {model_name} IWAE N={samples}", rate, "examples·samples/s")


def workflow_overhead(report: Report) -> None:
    print("\n5. workflow overhead")
    import yaml

    from five.sweep.table import sweep_table

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        # 500 sweep points = 500 train + 500 evaluate jobs
        config = {
            "experiment": "bench",
            "seeds": list(range(5)),
            "models": {"vae": {}, "fcvae": {}, "fif": {"probes": [1, 2, 4, 8]}, "five": {"probes": [1, 2, 4, 8]}},
            "datasets": {
                "digits": {"latent_dims": [8, 16, 32, 64, 96], "epochs": 1},
                "manifold": {"latent_dims": [8, 16, 32, 64, 96], "epochs": 1},
            },
        }
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        from five.sweep.table import SCHEMA_PATH, validate_config

        validate_config(config, SCHEMA_PATH)  # checks and fills in the defaults, as the workflow does
        command = [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(ROOT / "Snakefile"),
            "-d",
            str(work),
            "--configfile",
            str(work / "config.yaml"),
            "-n",
            "-q",
            "--cores",
            "1",
        ]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        assert result.returncode == 0, result.stderr[-2000:]
        jobs = 2 * len(sweep_table(config))
        report.add("workflow", f"snakemake -n, {jobs} train+evaluate jobs", seconds, "s", "<5")

        aggregation_time(report, config, work)

    tracking_share(report)


def aggregation_time(report: Report, config: dict, work: Path) -> None:
    """Seconds to collect 1000 finished runs' records and write the tables."""
    from five.base.config import TrainConfig
    from five.sweep.aggregate import collect_runs, summarise, write_tables
    from five.sweep.table import sweep_table

    sweep = sweep_table(config | {"seeds": list(range(10))}, str(work / "results"))[:1000]
    history = [{"epoch": e, "loss": 1.0 / e, "sigma": 0.1, "time_s": 0.1} for e in range(1, 101)]
    for row in sweep.to_dict("records"):
        run_dir = Path(row["run_dir"])
        run_dir.mkdir(parents=True)
        trained = TrainConfig.from_dict({**json.loads(row["training_json"]), "seed": row["seed"]}).to_dict()
        record = {"status": "complete", "config": trained, "history": history, "epochs_completed": 100}
        (run_dir / "train.json").write_text(json.dumps(record | {"wall_time_s": 10.0}))
        evaluation = {"status": "complete", "config": trained, "nll_nats": 80.0, "bits_per_dim": 1.2}
        (run_dir / "eval.json").write_text(json.dumps(evaluation | {"active_units": 1}))
    started = time.perf_counter()
    runs, _ = collect_runs(sweep, config)
    write_tables(summarise(runs, {"fif": 1, "five": 1}), work / "tables" / "main", "t", "c")
    report.add("workflow", f"aggregation of {len(sweep)} runs (+ tables)", time.perf_counter() - started, "s", "<5")


def packed_run_times(report: Report, device: torch.device) -> None:
    """Issue 17: a sweep point's 3 seeds as one packed `five train` process against 3 solo processes, one after
    the other, each with one thread, wall time including start-up; the quick sweep's settings."""
    print("\n5b. packed runs: 3 seeds in one process vs 3 solo processes (wall time incl. start-up, 1 thread)")
    from five.sweep.table import load_sweep_config, sweep_table

    quick = load_sweep_config(ROOT / "config" / "quick.yaml")
    points = sweep_table(quick).set_index(["dataset", "model", "latent_dim", "probes", "seed"])
    for dataset, model, probes in (("digits", "vae", 0), ("digits", "five", 1), ("manifold", "five", 1)):
        training = points.loc[(dataset, model, 4, probes, 0), "training_json"]
        base = [sys.executable, "-m", "five.cli", "train", "--threads", "1", "--device", str(device.type)]

        def wall(seeds: list[int], work: Path) -> float:
            started = time.perf_counter()
            subprocess.run(
                [*base, "--seed", *map(str, seeds), "--out", *(str(work / f"s{s}") for s in seeds)],
                check=True,
                capture_output=True,
                env=os.environ | {"OMP_NUM_THREADS": "1"},
            )
            return time.perf_counter() - started

        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "training.json").write_text(training)
            base += ["--settings", str(Path(folder) / "training.json")]
            solo = sum(wall([seed], Path(folder) / "solo") for seed in (0, 1, 2))
            packed = wall([0, 1, 2], Path(folder) / "packed")
        label = (
            f"{dataset} {model}{f' K={probes}' if probes else ''} d=4, {quick['datasets'][dataset]['epochs']} epochs"
        )
        report.add("packed-runs", f"{label}: 3 solo processes", solo, "s")
        report.add("packed-runs", f"{label}: 1 packed process", packed, "s")
        report.add("packed-runs", f"{label}: speed-up", solo / packed, "x", ">1.5")


def _train_like_a_job(row: dict) -> float:
    """One quick-sweep run as its job trains it (one thread); returns the training wall time."""
    from five.base.config import TrainConfig
    from five.run.train import train

    torch.set_num_threads(1)
    config = TrainConfig(**json.loads(row["training_json"]), seed=row["seed"])
    return train(config, Path(row["run_dir"]), torch.device("cpu"), log=lambda line: None)["wall_time_s"]


def estimate_accuracy(report: Report) -> None:
    """`five estimate` against the measured training time of the quick sweep's runs (seed 0, CPU), two runs at a
    time with one thread each, as `snakemake --cores all` runs the sweep on 2 cores."""
    import multiprocessing
    import statistics
    from concurrent.futures import ProcessPoolExecutor

    from five.sweep.estimate import estimate_sweep
    from five.sweep.table import load_sweep_config, sweep_table

    print("\n5c. five estimate against measured training time (quick sweep, seed 0, CPU, 2 jobs at a time)")
    config = load_sweep_config(ROOT / "config" / "quick.yaml")
    config["seeds"] = [0]
    with tempfile.TemporaryDirectory() as folder:
        sweep = sweep_table(config, folder)
        estimate = estimate_sweep(config, sweep, torch.device("cpu"), None, log=lambda line: None)
        predicted = estimate.set_index("run_dir")["predicted_train_s"]
        rows = sweep.to_dict("records")
        with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
            actual = list(pool.map(_train_like_a_job, rows))
    ratios = [seconds / predicted[row["run_dir"]] for row, seconds in zip(rows, actual)]
    report.add(
        "estimate",
        f"quick sweep: runs within 2x of the prediction (of {len(ratios)})",
        100 * sum(0.5 <= ratio <= 2 for ratio in ratios) / len(ratios),
        "%",
        ">80",
    )
    report.add("estimate", "actual/predicted: median", statistics.median(ratios), "x")
    report.add("estimate", "actual/predicted: smallest", min(ratios), "x")
    report.add("estimate", "actual/predicted: largest", max(ratios), "x")


def tracking_share(report: Report, epochs: int = 200) -> None:
    """MLflow logging (SQLite backend, per-epoch metrics batched) against the training time of a digits run:
    the fixed cost per job (client, run creation, params, final flush; mlflow imports included) and the
    share of a `epochs`-epoch run."""
    import os

    from five.base.config import TrainConfig
    from five.run.train import train

    config = TrainConfig(model="vae", dataset="digits", latent_dim=8, epochs=epochs, hidden_width=128)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        started = time.perf_counter()
        from five.run.tracking import RunTracker, ensure_experiment

        ensure_experiment("bench")  # once per sweep (by its first job), not per job
        setup = time.perf_counter() - started
        started = time.perf_counter()
        tracker = RunTracker("bench", "bench-run")
        tracker.start(config.to_dict())
        logging_seconds = time.perf_counter() - started
        per_epoch = []

        def on_epoch(entry):
            started = time.perf_counter()
            tracker.log_metrics({k: v for k, v in entry.items() if k != "epoch"}, step=entry["epoch"], flush=False)
            per_epoch.append(time.perf_counter() - started)

        result = train(config, Path(folder) / "run", torch.device("cpu"), log=lambda line: None, on_epoch=on_epoch)
        started = time.perf_counter()
        tracker.finish()
        logging_seconds += time.perf_counter() - started + sum(per_epoch)
    report.add("workflow", "MLflow experiment creation (once per sweep)", setup * 1000, "ms")
    report.add(
        "workflow", "MLflow fixed cost per job (start + finish)", (logging_seconds - sum(per_epoch)) * 1000, "ms"
    )
    report.add("workflow", "MLflow cost per epoch (buffered)", 1000 * sum(per_epoch) / len(per_epoch), "ms")
    share = 100 * logging_seconds / (result["wall_time_s"] + logging_seconds)
    report.add(
        "workflow", f"MLflow share of a {epochs}-epoch digits run ({result['wall_time_s']:.1f} s)", share, "%", "<2"
    )


def validation_share(report: Report) -> None:
    """Monitoring (validation every epochs/20) as a share of training time, per model, digits d = 8."""
    from five.base.config import TrainConfig
    from five.run.train import train

    print("\n6. validation monitoring as a share of training time (digits, d = 8, 100 epochs, eval every 5)")
    for model, probes in (("vae", None), ("fcvae", None), ("fif", 1), ("five", 1)):
        config = TrainConfig(model=model, dataset="digits", latent_dim=8, probes=probes, epochs=100, hidden_width=256)
        with tempfile.TemporaryDirectory() as folder:
            result = train(config, Path(folder), torch.device("cpu"), log=lambda line: None)
        monitoring = sum(entry.get("validation_time_s", 0.0) for entry in result["history"])
        training = sum(entry["time_s"] for entry in result["history"])
        report.add(
            "monitoring", f"digits d=8 {model} validation share", 100 * monitoring / (training + monitoring), "%"
        )


SECTIONS = (
    "steps",
    "reference",
    "compiled",
    "graph",
    "compiled-graph",
    "graph-cudnn",
    "packed",
    "packed-trunks",
    "packed-vmap",
    "packed-runs",
    "estimate",
    "overhead",
    "iwae",
    "workflow",
    "monitoring",
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d = 16 and the MLP only, fewer repetitions")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, help="CSV file (default: results/benchmarks/<date>-<device>.csv)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run these sections only (default: all)")
    args = parser.parse_args(argv)
    from five.run.device import choose_device

    device = choose_device(args.device)
    report = Report(device)
    print(
        f"five benchmarks on {report.context['device_name']} ({device}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    dims, architectures = ((16,), ("mlp",)) if args.quick else ((8, 16, 64), ("mlp", "conv"))
    repeats, inner = (5, 2) if args.quick else (7, 3)
    sections = {
        "steps": lambda: step_ratios(report, device, dims, architectures, repeats, inner),
        "reference": lambda: reference_comparison(report, device, architectures, repeats, inner),
        "compiled": lambda: compiled_step_ratios(report, device, repeats, inner),
        "graph": lambda: graph_step_times(report, device, repeats, inner),
        "compiled-graph": lambda: compiled_graph_step_times(report, device, repeats, inner),
        "graph-cudnn": lambda: cudnn_autotuned_graph_times(report, device, repeats, inner),
        "packed": lambda: packed_step_times(report, device, repeats, inner),
        "packed-trunks": lambda: packed_trunk_times(report, device, repeats, inner),
        "packed-vmap": lambda: packed_vmap_times(report, device, repeats, inner),
        "packed-runs": lambda: packed_run_times(report, device),
        "estimate": lambda: estimate_accuracy(report),
        "overhead": lambda: outside_model_share(report, device, repeats, inner),
        "iwae": lambda: iwae_throughput(report, device),
        "workflow": lambda: workflow_overhead(report),
        "monitoring": lambda: validation_share(report),
    }
    for name in args.only or SECTIONS:
        sections[name]()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    report.write(args.out or ROOT / "results" / "benchmarks" / f"{stamp}-{device.type}.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
