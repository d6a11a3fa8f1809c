import os

import pytest
import torch

# Providers made to misbehave (crash, wrong answer, OOM), registered for the tests only; spawned
# worker processes inherit the variable and sys.path.
os.environ.setdefault("NVFP4BENCH_PROVIDER_MODULES", "misbehaving_providers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HAS_CUDA = torch.cuda.is_available()
# Without a GPU the Triton kernels run in Triton's interpreter; the variable must be set before
# the first `import triton` of the test session, whichever test module comes first.
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (none visible)")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)
