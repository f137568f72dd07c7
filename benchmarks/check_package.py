"""How long `kit check` and `kit package` take on real `kit build` outputs, per format, and what they measure.

Builds each requested example at the validator's 224×224 (random weights, no
download; HF examples at their real base size) in both formats, then for the ONNX
file and the bundle times `run_check` (every rule of the format's table, including
the latency figure) and `package_submission` (zip, re-open, check the zip),
packages twice to confirm identical sha256, and prints one table. The examples'
heads are untrained, so packaging passes `allow_untrained`.

    .venv/bin/python benchmarks/check_package.py [--only example-video hf-resnet50] [--threads N]
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import tempfile
import time
from pathlib import Path

from discriminator.artifact import load_artifact
from discriminator.build import BuildRequest, build_detector
from discriminator.check import run_check
from discriminator.check.context import default_threads
from discriminator.package import package_submission

#: name → modality; the HF entries are built from their base configs with random weights.
EXAMPLES = {"example-image": "image", "example-video": "video", "hf-resnet50": "image", "hf-videomae": "video"}


def source_options(name: str) -> dict:
    if name == "hf-videomae":
        from transformers import VideoMAEConfig

        return {"config": VideoMAEConfig()}
    if name == "hf-resnet50":
        from transformers import ResNetConfig

        return {"config": ResNetConfig()}
    return {}


def measure(name: str, work: Path, threads: int) -> list[dict]:
    modality = EXAMPLES[name]
    build_detector(BuildRequest(modality=modality, model=name, out_dir=work / name, threads=threads,
                                source_options=source_options(name)))
    rows = []
    for fmt in ("onnx", "bundle"):
        started = time.perf_counter()
        report = run_check(work / name, threads=threads, format=fmt)
        check_seconds = time.perf_counter() - started
        started = time.perf_counter()
        first = package_submission(work / name, out_dir=work / "zips-1" / name, threads=threads, format=fmt,
                                   allow_untrained=True)
        package_seconds = time.perf_counter() - started
        second = package_submission(work / name, out_dir=work / "zips-2" / name, threads=threads, format=fmt,
                                    allow_untrained=True)
        model_bytes = sum(len(data) for data in load_artifact(work / name, fmt).members.values())
        rows.append({
            "name": name,
            "format": fmt,
            "model_mib": model_bytes / 1024**2,
            "zip_mib": first.size / 1024**2,
            "check_s": check_seconds,
            "package_s": package_seconds,
            "latency": report.result("latency").message.split(" on this CPU")[0],
            "fails": ",".join(r.id for r in report.failures) or "-",
            "warns": ",".join(r.id for r in report.warnings) or "-",
            "identical": first.sha256 == second.sha256 == hashlib.sha256(second.zip_path.read_bytes()).hexdigest(),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(EXAMPLES), default=["example-image", "example-video"])
    parser.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {args.threads} intra-op thread(s), CPU (onnxruntime; torch in the bundle worker)")
    header = (f"{'model':<14} {'format':<7} {'model MiB':>9} {'zip MiB':>8} {'check s':>8} {'package s':>9}  "
              f"{'identical':>9}  latency / fails / warns")
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            for row in measure(name, Path(tmp), args.threads):
                print(f"{row['name']:<14} {row['format']:<7} {row['model_mib']:9.1f} {row['zip_mib']:8.1f} "
                      f"{row['check_s']:8.1f} {row['package_s']:9.1f}  {str(row['identical']):>9}  "
                      f"{row['latency']} / {row['fails']} / {row['warns']}")


if __name__ == "__main__":
    main()
