"""Checkpoints as data: reading them safely (weights.py) and rebuilding the model and flow from the config
they store (stored_config.py). Neutral ground: train/ writes checkpoints and sampling/ reads them, and
neither imports the other for it."""
