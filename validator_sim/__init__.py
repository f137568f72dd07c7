"""A local, bit-exact copy of the SN34 evaluator's pipeline, one profile per era (contract §1–§7, current-contract).

ONNX models run with onnxruntime, numpy, OpenCV, PyAV, Pillow and decord alone: that path never
imports torch. Bundles are run by torch in-process, as the evaluator runs them (`session.BundleSession`).
"""
