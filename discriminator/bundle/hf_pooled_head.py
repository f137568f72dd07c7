"""The pooled linear head the kit puts on a Hugging Face base model, as model.py rebuilds it.

`kit build --format bundle` embeds this file verbatim in model.py when the detector
is a base model plus the kit's linear head (discriminator.sources.huggingface.
PooledLinearHead); it computes the same thing with only torch, so the state-dict
keys (`base.*`, `head.*`) and the outputs match.
"""

import torch
from torch import nn


def pooled_embedding(output):
    """The pooled vector of a base model's output: pooler_output, else the mean over tokens."""
    hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
    if hidden.dim() == 4:  # a conv feature map [N, C, h, w] → tokens [N, h·w, C]
        hidden = hidden.flatten(2).transpose(1, 2)
    pooled = output.pooler_output if hasattr(output, "pooler_output") else None
    if pooled is None:
        pooled = hidden.mean(dim=1)
    return pooled.flatten(1)


class PooledLinearHead(nn.Module):
    """A base model plus one linear layer on its pooled embedding."""

    def __init__(self, base, hidden_size, num_classes):
        super().__init__()
        self.base = base
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, pixel_values):
        return self.head(pooled_embedding(self.base(pixel_values)))
