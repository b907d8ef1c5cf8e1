# One evaluation job per sweep row: IWAE test likelihood and the collapse metrics into eval.json.


rule evaluate:
    input:
        "results/{dataset}/{model}/d{latent_dim}/k{probes}/s{seed}/train.json",
    output:
        "results/{dataset}/{model}/d{latent_dim}/k{probes}/s{seed}/eval.json",
    params:
        five=FIVE,
        run_dir=lambda wildcards: sweep_row(wildcards)["run_dir"],
        importance_samples=lambda wildcards: sweep_row(wildcards)["importance_samples"],
        images=lambda wildcards: (
            f"--image-dir {sweep_row(wildcards)['run_dir']}/grids" if wildcards.dataset in IMAGE_DATASETS else ""
        ),
        device=config["device"],
        model_selection=config["model_selection"],
        data_dir=DATA_DIR,
        experiment=config["experiment"],
        gpu_locks=GPU_LOCKS,
    log:
        "logs/evaluate/{dataset}/{model}/d{latent_dim}/k{probes}/s{seed}.log",
    resources:
        gpu=1,
        runtime=job_resource("evaluate", "runtime", 60),
        mem_mb=job_resource("evaluate", "mem_mb", 8000),
    conda:
        "../envs/five.yaml"
    shell:
        "{params.five} evaluate --run {params.run_dir} --importance-samples {params.importance_samples} "
        "{params.images} --model-selection {params.model_selection} --device {params.device} --data-dir {params.data_dir} "
        "--mlflow-experiment {params.experiment} --gpu-lock-dir {params.gpu_locks} --out {output} > {log} 2>&1"
