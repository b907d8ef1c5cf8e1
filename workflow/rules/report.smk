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
        config=config,
        provenance=PROVENANCE,
    script:
        "../scripts/config_snapshot.py"
