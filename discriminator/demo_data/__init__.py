"""Built-in demo data: a deterministic, generated stand-in for SN34's image and video datasets.

`generate_demo_data(out, seed, size, modality)` writes train/val/test splits in the
layout `kit bench --data` reads; `kit data demo` is its command line. See
docs/demo-data.md for what the classes look like and why.
"""

from discriminator.demo_data.generate import DATASETS, SIZES, DatasetRecord, DemoDataSummary, generate_demo_data

__all__ = ["DATASETS", "SIZES", "DatasetRecord", "DemoDataSummary", "generate_demo_data"]
