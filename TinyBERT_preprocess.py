"""ModelZoo entry point: `python3 TinyBERT_preprocess.py ...` is `python3 -m tinybert_infer preprocess ...`."""

import sys

from tinybert_infer.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["preprocess", *sys.argv[1:]]))
