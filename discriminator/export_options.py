"""Export settings the command line needs without importing torch (kit starts fast)."""

#: onnxruntime 1.22 (the validators' floor) loads opset ≤ 22; SDPA attention needs ≥ 14.
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 14, 22, 18
#: The exporters `discriminator.export.EXPORTERS` implements, default first.
EXPORTER_NAMES = ("torchscript", "dynamo")
