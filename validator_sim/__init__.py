"""A local, bit-exact copy of the SN34 evaluator's pipeline, one profile per era (contract §1–§7, current-contract).

ONNX models run with onnxruntime, numpy, OpenCV, PyAV, Pillow and decord alone: that path never
imports torch. Bundles are run by torch as the evaluator runs them: in-process under the kit's own Python, or in a
worker under the evaluator's runtime (`session.open_bundle_session`, `runtime`).
"""

import sn34_torchvision

sn34_torchvision.install()  # see discriminator/__init__.py
