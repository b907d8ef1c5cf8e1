# MNIST and CIFAR-10 are fetched by local rules on the submit host, so compute nodes never need internet.
# Files already in place (fetched by hand or by an earlier run) are used as they are.


rule download_mnist:
    output:
        [f"{DATA_DIR}/{file}" for file in VISION_FILES["mnist"]],
    log:
        f"{LOGS}/download/mnist.log",
    localrule: True
    conda:
        "../envs/five.yaml"
    params:
        data_dir=lambda wildcards, output: data_root(output, "mnist"),
    shell:
        '"$FIVE_PYTHON" -m five.cli download --dataset mnist --data-dir {params.data_dir:q} > {log:q} 2>&1'


rule download_cifar10:
    output:
        [f"{DATA_DIR}/{file}" for file in VISION_FILES["cifar10"]],
    log:
        f"{LOGS}/download/cifar10.log",
    localrule: True
    conda:
        "../envs/five.yaml"
    params:
        data_dir=lambda wildcards, output: data_root(output, "cifar10"),
    shell:
        '"$FIVE_PYTHON" -m five.cli download --dataset cifar10 --data-dir {params.data_dir:q} > {log:q} 2>&1'
