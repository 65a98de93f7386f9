"""ModelZoo entry point: `python3 TinyBERT_postprocess.py ...` is `python3 -m tinybert_infer postprocess ...`."""

import sys

from tinybert_infer.cli.main import run

if __name__ == "__main__":
    run(["postprocess", *sys.argv[1:]])
