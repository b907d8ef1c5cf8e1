# `snakemake --report report.html`: tables, plots and the validated configuration.


report: "../report/workflow.rst"


rule config_snapshot:
    output:
        report(CONFIG_SNAPSHOT, caption="../report/config.rst", category="Configuration"),
    log:
        f"{LOGS}/config_snapshot.log",
    localrule: True
    conda:
        "../envs/five.yaml"
    params:
        # the config itself is no parameter (the script writes Snakemake's): its hash names the output, so any
        # change of it is a new snapshot, and a parameter would rerun the aggregation for keys merely reordered
        provenance=PROVENANCE,
    script:
        "../scripts/config_snapshot.py"
