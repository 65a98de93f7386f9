"""Offline-inference pipeline for TinyBERT SST-2 classifiers (ModelZoo-style, runs without an NPU)."""

__version__ = "0.1.0"
