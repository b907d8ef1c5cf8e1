# `snakemake estimate --configfile …`: the sweep's predicted device-hours before it runs (five estimate), on
# the configured device. With a data set's `runtime: estimate`, cluster runtimes come from its estimate.csv.


rule estimate:
    input:
        CONFIG_SNAPSHOT,
    output:
        csv=ESTIMATE_CSV,
        md=report(ESTIMATE_MD, caption="../report/estimate.rst", category="Cost"),
    log:
        f"{LOGS}/estimate.log",
    conda:
        "../envs/five.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        device=config["device"],
        gpus=config["gpus"],
        data_dir=DATA_DIR,
        out_dir=lambda wildcards, output: os.path.dirname(output.csv),
        pack=["--pack-seeds"] if config["pack_seeds"] else [],
    shell:
        'OMP_NUM_THREADS={threads} "$FIVE_PYTHON" -m five.cli estimate --configfile {input:q} --device {params.device:q} '
        "--gpus {params.gpus:q} --data-dir {params.data_dir:q} --out-dir {params.out_dir:q} {params.pack:q} > {log:q} 2>&1"
