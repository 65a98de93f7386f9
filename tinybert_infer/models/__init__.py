"""Checkpoints and the networks built from them: reading, label order, specs, random test checkpoints."""
