"""Executing a run: the ais_bench feeding loop, length-aware batching, the result layout."""
