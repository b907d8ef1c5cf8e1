# One training job per sweep point, its seeds packed into one model (pack_seeds; else one job per seed). Its
# declared outputs are stamps, train.done in each run folder, touched when the job succeeds: the runs' own
# files (train.json, checkpoints) are five's, which resumes each run where it stands and leaves finished ones
# as they are. A killed, preempted or failed job leaves no stamps, and the evaluation that needs them reruns
# it (Snakemake neither deletes a run's files first nor puts back an older train.json beside newer
# checkpoints, as it would for declared ones). A diverged run records its reason and exits 0, so it is shown
# as diverged in the tables instead of being retried. The first job that logs to MLflow creates the
# experiment (no job of its own: such a job, rerun for another interpreter or experiment name, hid the training
# jobs of that invocation from the plan). A sweep point's settings reach its job as one file, training.json
# (the TrainConfig fields of its sweep row, `five train --settings`), rewritten only when they change: a changed
# setting reruns the job, and `five train --restart-if-changed` decides what each run does with it.


rule point_training:
    output:
        f"{POINT_PATTERN}/training.json",
    log:
        point_folder(f"{LOGS}/training", *WILDCARDS) + ".log",
    localrule: True
    conda:
        "../envs/five.yaml"
    params:
        settings=lambda wildcards: job_rows(wildcards)[0]["training_json"],
    shell:
        "printf '%s\\n' {params.settings:q} > {output:q} 2> {log:q}"


rule train:
    input:
        data=data_inputs,
        settings=f"{POINT_PATTERN}/training.json",
    output:
        touch(job_run_files("train.done")),
    log:
        job_log("train"),
    conda:
        "../envs/five.yaml"
    threads: job_threads
    resources:
        gpu=1,
        runtime=job_resource("train", "runtime", 120),
        mem_mb=job_resource("train", "mem_mb", 8000),
    params:
        seeds=job_seeds,
        run_dirs=job_runs,
        device=config["device"],
        options=train_options,
        data_dir=DATA_DIR,
        experiment=config["experiment"],
        artifacts=MLFLOW_ARTIFACTS,
        gpu_locks=GPU_LOCKS,
    shell:
        'OMP_NUM_THREADS={threads} "$FIVE_PYTHON" -m five.cli train --threads {threads} '
        "--settings {input.settings:q} --seed {params.seeds:q} "
        "--device {params.device:q} --data-dir {params.data_dir:q} --out {params.run_dirs:q} {params.options:q} "
        "--restart-if-changed --record-divergence --mlflow-experiment {params.experiment:q} "
        "--mlflow-artifact-location {params.artifacts:q} "
        "--gpu-lock-dir {params.gpu_locks:q} > {log:q} 2>&1"
