# All runs → results/runs.csv (the table every figure and table is made from) → tables and plots.


rule aggregate:
    input:
        train=run_files("train.json"),
        evaluation=run_files("eval.json"),
    output:
        runs=f"{RESULTS}/runs.csv",
        histories=f"{RESULTS}/histories.csv",
    log:
        "logs/aggregate.log",
    localrule: True
    run:
        from five.aggregate import collect_runs

        runs, histories = collect_runs(SWEEP)
        runs.to_csv(output.runs, index=False)
        histories.to_csv(output.histories, index=False)
        Path(log[0]).write_text(f"{len(runs)} runs, {int((runs['status'] == 'diverged').sum())} diverged\n")


rule tables:
    input:
        f"{RESULTS}/runs.csv",
    output:
        main_csv=report(f"{RESULTS}/tables/main.csv", caption="../report/main_table.rst", category="Tables"),
        main_md=f"{RESULTS}/tables/main.md",
        main_tex=f"{RESULTS}/tables/main.tex",
        budget_csv=report(f"{RESULTS}/tables/budget.csv", caption="../report/budget_table.rst", category="Tables"),
        budget_md=f"{RESULTS}/tables/budget.md",
        budget_tex=f"{RESULTS}/tables/budget.tex",
    params:
        references={name: settings.get("reference", []) for name, settings in config["datasets"].items()},
        probes_shown=probes_shown(),
    log:
        "logs/tables.log",
    localrule: True
    run:
        import pandas as pd

        from five.aggregate import attach_references, summarise, write_tables

        runs = pd.read_csv(input[0])
        shown = ", ".join(f"{model} at K={k}" for model, k in params.probes_shown.items())
        main = attach_references(summarise(runs, params.probes_shown), params.references)
        write_tables(main, Path(output.main_csv).with_suffix(""), "Test likelihood by latent dimension",
                     f"Best per column in bold; {shown}; diverged runs are marked, not dropped.")
        budget = attach_references(summarise(runs[runs["probes"] > 0]), params.references)
        write_tables(budget, Path(output.budget_csv).with_suffix(""), "Hutchinson budget ablation",
                     "FIF and FIVE at every budget K; best per column in bold.")
        Path(log[0]).write_text(Path(output.main_md).read_text())


rule plots:
    input:
        runs=f"{RESULTS}/runs.csv",
        histories=f"{RESULTS}/histories.csv",
    output:
        likelihood=report(PLOTS[0], caption="../report/likelihood.rst", category="Posterior collapse"),
        active=report(PLOTS[1], caption="../report/active_units.rst", category="Posterior collapse"),
        budget=report(PLOTS[2], caption="../report/budget.rst", category="Ablations"),
        curves=report(PLOTS[3], caption="../report/curves.rst", category="Training"),
    params:
        probes_shown=probes_shown(),
    log:
        "logs/plots.log",
    localrule: True
    run:
        import pandas as pd

        from five import plots

        runs, histories = pd.read_csv(input.runs), pd.read_csv(input.histories)
        plots.likelihood_vs_latent_dim(runs, params.probes_shown, Path(output.likelihood))
        plots.active_units_vs_latent_dim(runs, params.probes_shown, Path(output.active))
        plots.budget_ablation(runs, Path(output.budget))
        plots.training_curves(histories, params.probes_shown, Path(output.curves))
        Path(log[0]).write_text("\n".join(output) + "\n")
