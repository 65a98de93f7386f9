"""Scoring a result folder: accuracy and per-class metrics."""
