"""ModelZoo entry point: `python3 TinyBERT_postprocess.py ...` is `python3 -m tinybert_infer postprocess ...`."""

import sys

from tinybert_infer.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["postprocess", *sys.argv[1:]]))
