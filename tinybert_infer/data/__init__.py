"""GLUE TSV reading, tokenisation, per-sample input files and their manifest."""
