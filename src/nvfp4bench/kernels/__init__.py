"""Hand-written GPU kernels (Triton) used by the providers."""
