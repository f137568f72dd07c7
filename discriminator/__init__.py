"""Turn a real/AI media detector into a submission the SN34 validator accepts.

Importing this package does not import torch: the spec, artifact reading and the
checker work with onnx/onnxruntime alone, so `validator_sim` can use them.
"""

__version__ = "0.1.0"

import sn34_torchvision

# torchvision from the package registry is a CUDA build; under the CPU torch its compiled ops do not load and its
# import would fail. timm, open_clip and transformers import it, so it is made importable before anyone does
# (`make setup` also does this for every Python of the kit's venv, from a .pth file).
sn34_torchvision.install()
