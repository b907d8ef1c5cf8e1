# All runs → results/<experiment>/runs.csv (the table every figure and table is made from) → tables and plots.


rule aggregate:
    input:
        evaluations=run_files("eval.json"),  # each made after its run's training: with train.json, a row's source
        # what each point's runs were trained and evaluated with: an edit of them reruns the aggregation, and with it
        # every evaluation that an earlier invocation failed to redo (Snakemake ignores a missing intermediate file
        # whose consumers are up to date)
        settings=point_files("training.json") + point_files("settings.json"),
        config=CONFIG_SNAPSHOT,  # any config edit reruns it (and its check that each run is made as configured)
    output:
        runs=f"{RESULTS}/runs.csv",
        histories=f"{RESULTS}/histories.csv",
        timing=report(f"{RESULTS}/timing.md", caption="../report/timing.rst", category="Cost"),
    log:
        f"{LOGS}/aggregate.log",
    localrule: True
    conda:
        "../envs/five.yaml"
    params:
        sweep=SWEEP,
        config_keys=estimate_config(config),  # what the checks of collect_runs and estimate_key read
        estimate=ESTIMATE_CSV,  # optional (not an input: the sweep never waits for an estimate)
    script:
        "../scripts/aggregate.py"


rule tables:
    input:
        runs=f"{RESULTS}/runs.csv",
    output:
        main_csv=report(f"{RESULTS}/tables/main.csv", caption="../report/main_table.rst", category="Tables"),
        main_md=report(f"{RESULTS}/tables/main.md", caption="../report/main_table.rst", category="Tables"),
        main_tex=f"{RESULTS}/tables/main.tex",
        budget_csv=report(f"{RESULTS}/tables/budget.csv", caption="../report/budget_table.rst", category="Tables"),
        budget_md=report(f"{RESULTS}/tables/budget.md", caption="../report/budget_table.rst", category="Tables"),
        budget_tex=f"{RESULTS}/tables/budget.tex",
    log:
        f"{LOGS}/tables.log",
    localrule: True
    conda:
        "../envs/five.yaml"
    params:
        references=in_key_order({name: settings.get("reference", []) for name, settings in config["datasets"].items()}),
        probes_shown=probes_shown(config),
        provenance=PROVENANCE,
        model_selection=lambda wildcards: (
            "evaluated at the epoch with the best validation NLL"
            if config["model_selection"] == "best"
            else "evaluated at the last epoch"
        ),
    script:
        "../scripts/tables.py"


rule plots:
    input:
        runs=f"{RESULTS}/runs.csv",
        histories=f"{RESULTS}/histories.csv",
    output:
        likelihood=report(PLOTS[0], caption="../report/likelihood.rst", category="Posterior collapse"),
        active=report(PLOTS[1], caption="../report/active_units.rst", category="Posterior collapse"),
        budget=report(PLOTS[2], caption="../report/budget.rst", category="Ablations"),
        curves=report(PLOTS[3], caption="../report/curves.rst", category="Training"),
    log:
        f"{LOGS}/plots.log",
    localrule: True
    conda:
        "../envs/five.yaml"
    params:
        probes_shown=probes_shown(config),
    script:
        "../scripts/plots.py"


rule claims:
    input:
        runs=f"{RESULTS}/runs.csv",
        step_times=step_time_files(),
    output:
        csv=f"{RESULTS}/claims.csv",
        md=report(f"{RESULTS}/claims.md", caption="../report/claims.rst", category="Claims"),
        summary=f"{RESULTS}/claims.txt",
    log:
        f"{LOGS}/claims.log",
    localrule: True
    conda:
        "../envs/five.yaml"
    params:
        claims=in_key_order(config["claims"]),
        probes_shown=probes_shown(config),
        provenance=PROVENANCE,
    script:
        "../scripts/claims.py"
