"""A local, bit-exact copy of the SN34 validator's evaluation pipeline (contract §1–§7).

Runs with onnxruntime, numpy, OpenCV, PyAV and Pillow alone: nothing here imports torch.
"""
