"""The external accelerator tools: atc, ais_bench, trtexec, and running them."""
