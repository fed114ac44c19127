"""Fused PyTensor Ops (the GRU layer, the output layer) and their Numba kernels."""
