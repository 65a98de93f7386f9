"""The benchmark: the published TinyBERT results table reproduced on this CPU, and its sections."""
