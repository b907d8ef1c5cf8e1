# The five benchmark workflow: config → validated sweep table → train/evaluate jobs → tables, plots, report.
# Run: snakemake --cores all --resources gpu=4 [--configfile config/quick.yaml]
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The paper reproduction unless --configfile names another (a --configfile is not merged into this one; one that
# holds `{}` is refused, not taken for the paper config; an empty file Snakemake itself refuses, before this file).
if not config and not workflow.configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/timing.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/estimate.smk"


onsuccess:
    claims = Path(f"{RESULTS}/claims.txt")
    if ESTIMATE_ONLY:
        print(f"\n{Path(RESULTS, 'estimate.md').read_text()}\nPer run: {ESTIMATE_CSV}")
    else:
        if claims_current():
            print(f"\nDo the paper's claims hold? (details: {RESULTS}/claims.md)\n{claims.read_text()}")
        untracked = untracked_job_logs()
        if untracked:
            print(
                f"\nMLflow: {len(untracked)} jobs went on untracked (their JSON files are complete; e.g. "
                f"{untracked[0]}): once {TRACKING_URI} is reachable, "
                f"`{sync_command(TRACKING_URI, config['experiment'], RUN_FOLDERS_GLOB)}` logs them"
            )
        print(
            f"\nDone (experiment {config['experiment']}). Tables: {RESULTS}/tables/main.md (and .csv, .tex; budget "
            f"ablation in budget.*)\nPlots: {RESULTS}/plots/*.png   Runs: {RESULTS}/runs.csv   MLflow: "
            f"{browse_command(TRACKING_URI)}\nHTML report: snakemake --report report.html (with the same --configfile)"
        )
        stale = stale_report_file()  # a run of other targets (--until, a file) leaves them as they were
        if stale:
            print(
                f"Not all of these are this config's results yet ({stale}): snakemake with no target remakes them"
            )


rule all:
    default_target: True
    input:
        final_outputs(),
