"""ModelZoo entry point: `python3 TinyBERT_pth2onnx.py ...` is `python3 -m tinybert_infer export ...`."""

import sys

from tinybert_infer.cli.main import run

if __name__ == "__main__":
    run(["export", *sys.argv[1:]])
