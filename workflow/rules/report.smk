# `snakemake --report report.html`: tables, plots and the validated configuration.


report: "../report/workflow.rst"


rule config_snapshot:
    output:
        report(f"{RESULTS}/config.yaml", caption="../report/config.rst", category="Configuration"),
    params:
        config=config,
    log:
        "logs/config_snapshot.log",
    localrule: True
    run:
        import yaml

        Path(output[0]).write_text(yaml.safe_dump(params.config, sort_keys=False))
        Path(log[0]).write_text(f"wrote {output[0]}\n")
