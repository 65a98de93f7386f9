"""The benchmark: the published TinyBERT results table reproduced on this CPU, and its sections.

One concern per module (the commands: command.py; the run, in order: run.py):
  targets.py     the published figures and every target, each with its source
  limits.py      the machine's limit: GEMM rates, turned into samples/s for a model
  cells.py       one cell (backend x BS, accuracy run, GEMM rates) in its own process
  prepare.py     the throughput model, exports, artefacts, preprocessed inputs
  throughput.py  the throughput section: a cell per backend x BS
  accuracy.py    the accuracy section: the real checkpoint through the pipeline, per artefact
  dynamic.py     static-64 vs length-aware batching, end to end
  realjob.py     each precision's static-64 and planned plan on the real job
  verdicts.py    what the figures conclude: recommendations, targets met or not
  report.py      benchmark.md from the report; plot.py: benchmark.png
"""
