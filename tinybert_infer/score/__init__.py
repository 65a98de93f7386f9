"""`score`: a whole corpus (one TSV, a folder of TSV shards or a glob) -> one result folder of predictions.

Two engines share the reading (corpus.py), the model (scorer.py) and the output (output.py):
local.py streams on this host; ray_engine.py runs the same steps in a Ray Data actor pool. The command
itself is command.py (`add_command` is what cli/main.py picks up).
"""

from tinybert_infer.score.command import add_command  # noqa: F401
