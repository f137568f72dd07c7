"""Turn a real/AI media detector into a submission the SN34 validator accepts.

Importing this package does not import torch: the spec, artifact reading and the
checker work with onnx/onnxruntime alone, so `validator_sim` can use them.
"""

__version__ = "0.1.0"
