# One evaluation job per sweep row: IWAE test likelihood and the collapse metrics into eval.json.


rule evaluate:
    input:
        f"{RUN_PATTERN}/train.json",
    output:
        f"{RUN_PATTERN}/eval.json",
    params:
        run_dir=lambda wildcards: sweep_row(wildcards)["run_dir"],
        importance_samples=lambda wildcards: sweep_row(wildcards)["importance_samples"],
        images=lambda wildcards: (
            ["--image-dir", f"{sweep_row(wildcards)['run_dir']}/grids"] if wildcards.dataset in IMAGE_DATASETS else []
        ),
        device=config["device"],
        model_selection=config["model_selection"],
        sigma=config["sigma"],
        data_dir=DATA_DIR,
        experiment=config["experiment"],
        run_key=mlflow_run_key,
        artifacts=MLFLOW_ARTIFACTS,
        gpu_locks=GPU_LOCKS,
        cache=f"{RESULTS_ROOT}/.cache",
    log:
        f"{LOGS}/evaluate/{{dataset}}/{{model}}/d{{latent_dim}}/k{{probes}}/s{{seed}}.log",
    threads: job_threads
    resources:
        gpu=1,
        runtime=job_resource("evaluate", "runtime", 60),
        mem_mb=job_resource("evaluate", "mem_mb", 8000),
    conda:
        "../envs/five.yaml"
    shell:
        "OMP_NUM_THREADS={threads} \"$FIVE_PYTHON\" -m five.cli evaluate --threads {threads} --run {params.run_dir:q} "
        "--importance-samples {params.importance_samples:q} {params.images:q} "
        "--model-selection {params.model_selection:q} --sigma {params.sigma:q} --device {params.device:q} --data-dir {params.data_dir:q} "
        "--mlflow-experiment {params.experiment:q} --mlflow-run-key {params.run_key:q} --mlflow-artifact-location {params.artifacts:q} --gpu-lock-dir {params.gpu_locks:q} --cache-dir {params.cache:q} --out {output:q} > {log:q} 2>&1"
