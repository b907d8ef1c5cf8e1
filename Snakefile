# The five benchmark workflow: config → validated sweep table → train/evaluate jobs → tables, plots, report.
# Run: snakemake --cores all --resources gpu=4 [--configfile config/quick.yaml]
from snakemake.utils import min_version

min_version("9.0")


# The paper reproduction unless --configfile names another (a --configfile is not merged into this one).
if not config:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
