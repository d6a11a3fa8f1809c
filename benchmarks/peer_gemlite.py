"""Peer row: GemLite's Triton int4 W4A16 kernel (A16W4_HQQ_INT, group 128) against cuBLAS BF16
and the pipeline's nvfp4-triton-noquant GEMM, on the default model's layers, in one process.
GemLite 0.6 is pure Python + Triton; carry it as a wheel. Its NVFP4 kernels do not compile on
sm_90 with triton 3.6, so its int4 kernel is the peer.

    python benchmarks/peer_gemlite.py --ms 1 16 1024 4096 --out peer.tsv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from bench_triton_nvfp4 import LAYERS

from nvfp4bench.io import write_tsv
from nvfp4bench.kernels.tuning import time_graph
from nvfp4bench.providers import get_provider


def main() -> None:
    from gemlite.helper import A16W4_HQQ_INT

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ms", type=int, nargs="+", default=[1, 16, 1024, 4096])
    parser.add_argument("--rep-ms", type=float, default=50)
    parser.add_argument("--out", type=Path, default=Path("peer_gemlite.tsv"))
    args = parser.parse_args()
    rows = []
    ours = get_provider("nvfp4-triton-noquant")
    for layer, (N, K) in LAYERS.items():
        w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16)
        group = 128
        w_q = torch.randint(0, 16, (N, K), device="cuda", dtype=torch.uint8)
        scales = torch.rand(N, K // group, device="cuda", dtype=torch.float16) * 0.01
        zeros = torch.full((N, K // group), 7.5, device="cuda", dtype=torch.float16)
        gemlite = A16W4_HQQ_INT(dtype=torch.float16).from_weights(w_q, scales, zeros)
        for M in args.ms:
            x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
            x16 = x.to(torch.float16)
            bf16 = time_graph(lambda x=x, w=w: F.linear(x, w), args.rep_ms)
            peer = time_graph(lambda x16=x16, g=gemlite: g(x16), args.rep_ms)
            prepared = ours.prepare(x, w, None)
            nvfp4 = time_graph(prepared.run, args.rep_ms)
            rows.append(
                dict(
                    layer=layer,
                    N=N,
                    K=K,
                    M=M,
                    bf16_ms=bf16,
                    gemlite_int4_ms=peer,
                    nvfp4_triton_ms=nvfp4,
                    gemlite_x_bf16=bf16 / peer,
                    nvfp4_triton_x_bf16=bf16 / nvfp4,
                )
            )
            print(rows[-1], flush=True)
        del w, w_q, gemlite
        torch.cuda.empty_cache()
    table = pd.DataFrame(rows)
    write_tsv(table, args.out)
    pd.set_option("display.width", 200)
    print(table.to_string(index=False, float_format="%.3g"))


if __name__ == "__main__":
    main()
