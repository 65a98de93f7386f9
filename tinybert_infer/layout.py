"""File naming shared by every stage: the one place that knows ModelZoo's names."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

SEQ_LEN = 64
INPUT_NAMES = ("input_ids", "segment_ids", "input_mask")
IDS_NAME, SEGMENTS_NAME, MASK_NAME = INPUT_NAMES  # the inputs by role: code never indexes INPUT_NAMES
OUTPUT_NAME = "output"
DEFAULT_OPSET = 11  # the opset every atc (CANN 5.x to 9.x) takes; tools/atc.py warns on others

# ModelZoo defaults, relative to the working directory; overridable by flags or these variables.
MODEL_DIR_ENV = "TINYBERT_MODEL_DIR"
DATA_DIR_ENV = "TINYBERT_DATA_DIR"
DEFAULT_MODEL_DIR = "SST-2_model"
DEFAULT_DATA_DIR = os.path.join("glue_dir", "SST-2")
DEFAULT_BIN_DIR = "bert_bin"
DEFAULT_RESULT_DIR = "result"
MANIFEST_NAME = "manifest.json"
# Per-sample file dtypes: int64 (ModelZoo's, what the exported ONNX takes) or int32, for an OM whose inputs atc
# made int32 (ais_bench feeds raw bytes in the OM's own dtype). Readers tell them apart by the file size.
FILE_DTYPES = ("int64", "int32")


def default_model_dir() -> Path:
    return Path(os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR)


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def onnx_name(batch_size: int) -> str:
    return f"TinyBERT_bs{batch_size}.onnx"


def sim_onnx_name(batch_size: int) -> str:
    return f"TinyBERT_sim_bs{batch_size}.onnx"


def dynamic_onnx_name() -> str:
    """Dynamic batch and sequence axes: for runtimes that take any shape (length-aware batching)."""
    return "TinyBERT_dyn.onnx"


def dynamic_sim_onnx_name() -> str:
    return "TinyBERT_sim_dyn.onnx"


def packed_onnx_name() -> str:
    """Packed rows: several sentences per row of SEQ_LEN tokens, attention kept within each sentence (run/packing.py)."""
    return "TinyBERT_packed.onnx"


def packed_sim_onnx_name() -> str:
    return "TinyBERT_sim_packed.onnx"


# The packed graph's inputs by role. Rows are [batch, width]; cls_index is [batch, PACKED_SLOTS]: where each
# sentence of a row starts. Its output is [batch, PACKED_SLOTS, labels], one row per slot (empty slots too).
POSITIONS_NAME, SENTENCES_NAME, CLS_INDEX_NAME = "position_ids", "sentence_ids", "cls_index"
PACKED_INPUT_NAMES = (IDS_NAME, SEGMENTS_NAME, POSITIONS_NAME, SENTENCES_NAME, CLS_INDEX_NAME)
PACKED_SLOTS = 8  # sentences per row at most: SST-2 rows of 64 hold 2-3 on average; few need more than 8


def optimized_name(source_onnx: str, variant: str) -> str:
    """CPU-only artefact built from a simplified ONNX: TinyBERT_sim_bs8.onnx -> TinyBERT_sim_bs8.onnxruntime-fused.onnx
    (OpenVINO IR variants: .xml with a .bin beside it). The source stays what atc/trtexec consume."""
    stem = source_onnx[:-5] if source_onnx.endswith(".onnx") else source_onnx
    return f"{stem}.{variant}.{'xml' if variant.startswith('openvino') else 'onnx'}"


SELECTION_CACHE_NAME = "tinybert_backend_choice.json"  # `infer --backend auto`'s measured choice, per model


def om_stem(batch_size: int) -> str:
    return f"TinyBERT_bs{batch_size}"


def sample_file_name(index: int) -> str:
    """Per-sample input file, as ModelZoo's preprocessing names it."""
    return f"input{index}.bin"


def output_file_name(input_file_name: str, output_index: int, fmt: str) -> str:
    """ais_bench: stem of input 0's file cut at the first '.', then _<k>.<fmt lower-case>."""
    stem = os.path.basename(input_file_name).split(".", 1)[0]
    return f"{stem}_{output_index}.{fmt.lower()}"


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str):
    """Sort key comparing digit runs as integers (input2 < input10), as ais_bench does."""
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(name)]


DYNAMIC_EXPORT_HINT = (f"run python -m tinybert_infer export --dynamic, which writes {dynamic_sim_onnx_name()} "
                       f"and {packed_sim_onnx_name()}")


def export_hint(path: Path) -> str:
    """How to make a missing model file, from its ModelZoo name."""
    static = re.fullmatch(r"TinyBERT_(?:sim_)?bs(\d+)\.onnx", path.name)
    if static:
        return f"run bash test/pth2onnx.sh {static[1]} first"
    if path.name in (dynamic_onnx_name(), dynamic_sim_onnx_name(), packed_onnx_name(), packed_sim_onnx_name()):
        return DYNAMIC_EXPORT_HINT
    return "export it first: bash test/pth2onnx.sh BS, or python -m tinybert_infer export --dynamic"


def require_model(path, hint: Optional[str] = None) -> Path:
    """The model file itself, or the one-line error naming it and how to make it (every stage asks here)."""
    from tinybert_infer.errors import ExportError

    path = Path(path)
    if not path.is_file():
        kind = {".onnx": "ONNX model", ".xml": "OpenVINO IR"}.get(path.suffix.lower(), "model")
        raise ExportError(f"{path}: {kind} not found ({hint or export_hint(path)})")
    return path
