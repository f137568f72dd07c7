"""Safetensors bundles: the format the network accepts today (model_config.yaml + model.py + weights)."""
