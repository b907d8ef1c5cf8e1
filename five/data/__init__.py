"""The data sets: loaders, splits, dequantisation, the synthetic manifold and its true posterior."""
