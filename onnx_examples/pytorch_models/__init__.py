"""Small custom PyTorch detectors (no downloads): a CNN image detector and a per-frame video detector."""
