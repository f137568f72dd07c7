"""Bundle vs ONNX twin vs PyTorch, per example detector and bundle dtype: parity, drift, sizes, build time.

Builds each example with `--format both` at the given size into a temporary folder
(the bundle verified in a clean process as the evaluator loads it), then prints one
row per (detector, dtype). The Hugging Face examples are built from small configs
(no download) unless `--hub` is given.

    python benchmarks/bundle_parity.py                 # example-image, example-video at 224×224
    python benchmarks/bundle_parity.py --size 112 --with-hf
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from discriminator.build import BuildRequest, build_detector


def hf_configs() -> dict[str, object]:
    from transformers import ResNetConfig, VideoMAEConfig

    return {
        "hf-resnet50": ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic"),
        "hf-videomae": VideoMAEConfig(image_size=224, patch_size=16, num_frames=16, tubelet_size=2, hidden_size=96,
                                      num_hidden_layers=2, num_attention_heads=2, intermediate_size=192),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--with-hf", action="store_true", help="also the HF examples, from small configs")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    sources = [("image", "example-image", {}), ("video", "example-video", {})]
    if args.with_hf:
        configs = hf_configs()
        sources += [("image", "hf-resnet50", {"config": configs["hf-resnet50"]}),
                    ("video", "hf-videomae", {"config": configs["hf-videomae"]})]
    print(f"{'detector':<15}{'dtype':<10}{'|b−pt| logits':>14}{'|b−onnx|':>10}{'|Δp| max':>10}{'|Δp_real|':>10}"
          f"{'tolerance':>11}{'bundle MB':>10}{'load s':>8}{'build s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for modality, model, options in sources:
            size = 224 if model == "hf-videomae" else args.size
            for dtype in ("float32", "float16", "bfloat16"):
                started = time.perf_counter()
                result = build_detector(BuildRequest(modality=modality, model=model, out_dir=Path(tmp) / f"{model}-{dtype}",
                                                     height=size, width=size, dtype=dtype, threads=args.threads,
                                                     source_options=dict(options)))
                seconds = time.perf_counter() - started
                check = result.bundle_verify
                tolerance = max(r.tolerance for r in check.rows)
                print(f"{model:<15}{dtype:<10}{check.max_logits_vs_torch:>14.1e}{check.max_logits_vs_onnx:>10.1e}"
                      f"{check.max_probs_vs_torch:>10.1e}{check.max_p_real_vs_torch:>10.1e}"
                      f"{(check.drift_limit if check.drift_limit is not None else tolerance):>11.1e}"
                      f"{result.bundle_size_bytes / 1e6:>10.2f}{check.load_seconds:>8.1f}{seconds:>9.1f}")
    print("tolerance: float32 rows compare logits (1e-4 + 1e-4·max|logit|); float16/bfloat16 rows compare probabilities "
          "with the float32 wrapper (the drift limit).")


if __name__ == "__main__":
    main()
