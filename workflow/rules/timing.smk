# Step times side by side (claims on `step_time_s`, e.g. C3): one job per data set times a training step of
# each of its distinct configurations in one process on one device, the configurations taking turns in each
# round (five.run.timing). A cost claim pairs these rounds, never the epoch times of jobs that ran on other hosts
# or beside other jobs. Made only where a claim asks for `step_time_s`.


rule step_times:
    input:
        data=data_inputs,
    output:
        f"{RESULTS}/{{dataset}}/step_times.csv",
    log:
        f"{LOGS}/step_times/{{dataset}}.log",
    conda:
        "../envs/five.yaml"
    threads: job_threads
    resources:
        gpu=1,
    params:
        points=lambda wildcards: json.dumps(step_time_points(wildcards.dataset)),
        device=config["device"],
        cuda_graph=lambda wildcards: cuda_graph_mode(config["datasets"][wildcards.dataset]["cuda_graph"]),
        compile=["--compile"] if config["compile"] else [],
        data_dir=DATA_DIR,
        gpu_locks=GPU_LOCKS,
        timed_threads=job_threads,  # a time depends on them: a change reruns the timing (`threads:` is not tracked)
    shell:
        'OMP_NUM_THREADS={threads} "$FIVE_PYTHON" -m five.cli time-steps --threads {threads} --dataset {wildcards.dataset:q} '
        "--points {params.points:q} --device {params.device:q} --cuda-graph {params.cuda_graph:q} --data-dir {params.data_dir:q} {params.compile:q} "
        "--gpu-lock-dir {params.gpu_locks:q} --out {output:q} > {log:q} 2>&1"
