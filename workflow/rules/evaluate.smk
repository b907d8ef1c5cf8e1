# One evaluation job per sweep point, its seeds evaluated in turn in one process (pack_seeds; else one job per
# seed): IWAE test likelihood and the collapse metrics into each run's eval.json. An added seed reruns its
# point's evaluation job, old seeds included (minutes against its training's hours; their results come out the
# same).
#
# What reruns an evaluation: every run of its train job (the stamps: whatever the job changed, a continued or
# retrained seed, a seed added back after an edit, is evaluated afresh), its sweep point's training.json (an
# edit of the training settings, also after a train job that failed: its missing stamps then rerun it) and
# settings.json (the evaluation settings); each file is rewritten only when it changes. Snakemake checks no
# rerun reason of its own for a job downstream of a job that reruns, hence files and not params.


rule point_settings:
    output:
        f"{POINT_PATTERN}/settings.json",
    log:
        point_folder(f"{LOGS}/settings", *WILDCARDS) + ".log",
    localrule: True
    conda:
        "../envs/five.yaml"
    params:
        # a shell job: a `run:` block would start a Snakemake process per point (3–4 s each)
        settings=lambda wildcards: json.dumps(evaluation_settings(job_rows(wildcards)[0], config), indent=2),
    shell:
        "printf '%s\\n' {params.settings:q} > {output:q} 2> {log:q}"


rule evaluate:
    input:
        job_run_files("train.done"),
        f"{POINT_PATTERN}/training.json",
        f"{POINT_PATTERN}/settings.json",
    output:
        job_run_files("eval.json"),
    log:
        job_log("evaluate"),
    conda:
        "../envs/five.yaml"
    threads: job_threads
    resources:
        gpu=1,
        runtime=job_resource("evaluate", "runtime", 60),
        mem_mb=job_resource("evaluate", "mem_mb", 8000),
    params:
        # run folders in the order of the outputs, the seeds sorted (parameters of wildcards only: Snakemake
        # compares no parameter that takes the output when it decides what to rerun)
        run_dir=lambda wildcards: per_job(job_runs(wildcards)),
        importance_samples=lambda wildcards: job_rows(wildcards)[0]["importance_samples"],
        images=lambda wildcards: (
            ["--image-dir", *(f"{run_dir}/{GRIDS}" for run_dir in job_runs(wildcards))]
            if wildcards.dataset in IMAGE_DATASETS
            else []
        ),
        device=config["device"],
        model_selection=config["model_selection"],
        sigma=config["sigma"],
        data_dir=DATA_DIR,
        experiment=config["experiment"],
        artifacts=MLFLOW_ARTIFACTS,
        gpu_locks=GPU_LOCKS,
        cache=f"{RESULTS_ROOT}/.cache",
    shell:
        'OMP_NUM_THREADS={threads} "$FIVE_PYTHON" -m five.cli evaluate --threads {threads} --run {params.run_dir:q} '
        "--importance-samples {params.importance_samples:q} {params.images:q} "
        "--model-selection {params.model_selection:q} --sigma {params.sigma:q} --device {params.device:q} --data-dir {params.data_dir:q} "
        "--mlflow-experiment {params.experiment:q} --mlflow-artifact-location {params.artifacts:q} --gpu-lock-dir {params.gpu_locks:q} --cache-dir {params.cache:q} --out {output:q} > {log:q} 2>&1"
