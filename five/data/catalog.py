"""What is known of each built-in data set without loading it: the shape of one example, and the files and
split sizes of the torchvision data sets. Free of torch: the workflow checks configs and names input files with
it while it parses."""

NPZ_PREFIX = "npz:"  # a data set of one's own: npz:PATH names the .npz file
DATA_SHAPES = {"digits": (64,), "manifold": (10,), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
VALIDATION_SIZE = 10_000
OFFICIAL_SIZES = {"mnist": (60_000, 10_000), "cifar10": (50_000, 10_000)}  # (training, test) images
# The files torchvision's MNIST and CIFAR10 read, relative to the data root (tests check this against
# torchvision's own lists). Kept free of imports so that the workflow can name them without loading torch.
FILES = {
    "mnist": [
        f"MNIST/raw/{name}"
        for name in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    ],
    "cifar10": [
        f"cifar-10-batches-py/{name}"
        for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
    ],
}
