"""ModelZoo entry point: `python3 TinyBERT_preprocess.py ...` is `python3 -m tinybert_infer preprocess ...`."""

import sys

from tinybert_infer.cli.main import run

if __name__ == "__main__":
    run(["preprocess", *sys.argv[1:]])
