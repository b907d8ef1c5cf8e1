# One training job per sweep row. The run folder keeps checkpoint.pt beside the declared output train.json:
# a killed or preempted job resumes from it on rerun. A diverged run records its reason and exits 0, so it
# is shown as diverged in the tables instead of being retried. The first job that logs to MLflow creates the
# experiment (no job of its own: such a job, rerun for another interpreter or experiment name, hid the training
# jobs of that invocation from the plan).


rule train:
    input:
        data=data_inputs,
    output:
        f"{RUN_PATTERN}/train.json",
    params:
        options=lambda wildcards: train_arguments(sweep_row(wildcards)),
        run_dir=lambda wildcards: sweep_row(wildcards)["run_dir"],
        device=config["device"],
        step_options=step_options,
        data_dir=DATA_DIR,
        experiment=config["experiment"],
        run_key=mlflow_run_key,
        artifacts=MLFLOW_ARTIFACTS,
        gpu_locks=GPU_LOCKS,
    log:
        f"{LOGS}/train/{{dataset}}/{{model}}/d{{latent_dim}}/k{{probes}}/s{{seed}}.log",
    threads: job_threads
    resources:
        gpu=1,
        runtime=job_resource("train", "runtime", 120),
        mem_mb=job_resource("train", "mem_mb", 8000),
    conda:
        "../envs/five.yaml"
    shell:
        "OMP_NUM_THREADS={threads} \"$FIVE_PYTHON\" -m five.cli train --threads {threads} {params.options:q} "
        "--device {params.device:q} --data-dir {params.data_dir:q} --out {params.run_dir:q} {params.step_options:q} "
        "--restart-if-changed --record-divergence --mlflow-experiment {params.experiment:q} --mlflow-run-key {params.run_key:q} "
        "--mlflow-artifact-location {params.artifacts:q} "
        "--gpu-lock-dir {params.gpu_locks:q} > {log:q} 2>&1"
