"""nvfp4bench: NVFP4 + Hadamard GEMM benchmarks over the layer shapes of LLMs."""

__version__ = "0.1.0"
