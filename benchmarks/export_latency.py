"""Export time, ONNX size and onnxruntime-vs-PyTorch latency for every registered example, in one run.

For each example (HF ones at their real base size, random weights, no download):
build with `kit build`'s library call, then time the wrapped PyTorch module (eager,
no_grad) and the ONNX file in onnxruntime (ORT_ENABLE_ALL) on the same uint8 input
at B=1 and B=4 (T=16 for video), both with the same thread count. Prints a table
and the ratio onnxruntime / PyTorch (lower is better). For the transformers
examples PyTorch runs its default attention (SDPA, a fused kernel); with
`--torch-attention eager` it runs the plain matmul-softmax-matmul attention that
the ONNX graph also computes.

    .venv/bin/python benchmarks/export_latency.py [--repeats 3] [--only hf-videomae] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from discriminator.build import BuildRequest, build_detector
from discriminator.registry import resolve_backbone
from discriminator.wrapper import Detector


def example_options(name: str, attention: str | None = None) -> dict:
    """Base-size configs for the HF examples (the same architecture the hub checkpoint has, random weights)."""
    if name == "hf-videomae":
        from transformers import VideoMAEConfig

        config = VideoMAEConfig()  # ViT-B/16, 16 frames, tubelet 2: videomae-base
        if attention:
            config._attn_implementation = attention
        return {"config": config}
    if name == "hf-resnet50":
        from transformers import ResNetConfig

        return {"config": ResNetConfig()}  # ResNet-50, as microsoft/resnet-50
    return {}


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--torch-attention", choices=("sdpa", "eager"), default=None,
                        help="attention kernel of the PyTorch baseline for transformers (default: the library's, SDPA)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.only or ["example-image", "example-video", "hf-resnet50", "hf-videomae"]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}; threads={args.threads} for both; median of {args.repeats} after 1 warm-up; "
          f"PyTorch attention: {args.torch_attention or 'library default (SDPA)'}")
    print(f"{'example':<15} {'export s':>8} {'MB':>7} {'B':>2} {'torch ms':>10} {'onnx ms':>10} {'onnx/torch':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            modality = "video" if "video" in name or "videomae" in name else "image"
            options = example_options(name)
            result = build_detector(BuildRequest(modality=modality, model=name, out_dir=Path(tmp) / name,
                                                 source_options=options, threads=args.threads))
            backbone, _ = resolve_backbone(name, modality, options=example_options(name, args.torch_attention))
            # Latency does not depend on weight values: a fresh instance of the same architecture is timed.
            detector = Detector(backbone, result.spec).eval()
            options_ort = ort.SessionOptions()
            options_ort.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options_ort.intra_op_num_threads = args.threads
            session = ort.InferenceSession(str(result.onnx_path), options_ort, providers=["CPUExecutionProvider"])
            feed = session.get_inputs()[0].name
            for batch in (1, 4):
                x = np.random.default_rng(0).integers(0, 256, result.spec.input_shape(batch, 16), dtype=np.uint8)
                xt = torch.from_numpy(x)
                with torch.no_grad():
                    torch_ms = median_ms(lambda: detector(xt), args.repeats)
                onnx_ms = median_ms(lambda: session.run(None, {feed: x}), args.repeats)
                print(f"{name:<15} {result.export_seconds:>8.1f} {result.size_bytes / 1e6:>7.1f} {batch:>2} "
                      f"{torch_ms:>10.1f} {onnx_ms:>10.1f} {onnx_ms / torch_ms:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
