"""Pure-PyTorch sparse 3D convolution (CPU and CUDA)."""
