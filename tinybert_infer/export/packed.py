"""The packed graph (modeling.PackedSequenceClassifier): TinyBERT_packed.onnx and TinyBERT_sim_packed.onnx,
dynamic in rows, fixed in width and slots, validated sentence by sentence against the unpacked PyTorch model."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch

from tinybert_infer.errors import ExportError
from tinybert_infer.layout import (CLS_INDEX_NAME, INPUT_NAMES, OUTPUT_NAME, PACKED_INPUT_NAMES,
                                   PACKED_SLOTS, packed_onnx_name, packed_sim_onnx_name)

PACKED_CHECK_BATCHES = (1, 3)  # rows per run: the row axis is dynamic


def export_packed_onnx(model, path: Path, *, width: int, opset: int, slots: int = PACKED_SLOTS) -> None:
    from tinybert_infer.models.modeling import PackedSequenceClassifier

    dummy = tuple(torch.zeros(2, slots if name == CLS_INDEX_NAME else width, dtype=torch.int64)
                  for name in PACKED_INPUT_NAMES)
    axes = {name: {0: "rows"} for name in (*PACKED_INPUT_NAMES, OUTPUT_NAME)}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(PackedSequenceClassifier(model).eval(), dummy, str(path),
                          input_names=list(PACKED_INPUT_NAMES), output_names=[OUTPUT_NAME], opset_version=opset,
                          dynamic_axes=axes, do_constant_folding=True, dynamo=False)


def check_packed_contract(path: Path, num_labels: int, width: int, slots: int = PACKED_SLOTS) -> None:
    import onnx

    from tinybert_infer.export.onnx import checked_graph, value_dims

    graph, values = checked_graph(path)
    inputs = {i.name: i for i in values}
    if sorted(inputs) != sorted(PACKED_INPUT_NAMES):
        raise ExportError(f"{path}: inputs {sorted(inputs)}, expected {sorted(PACKED_INPUT_NAMES)}")
    for name, value in inputs.items():
        dims, expected = value_dims(value), slots if name == CLS_INDEX_NAME else width
        if value.type.tensor_type.elem_type != onnx.TensorProto.INT64 or dims != [None, expected]:
            raise ExportError(f"{path}: input {name} is {dims}, expected int64 [rows, {expected}]")
    dims = value_dims(graph.output[0])
    if len(graph.output) != 1 or graph.output[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT or \
            len(dims) != 3 or dims[1] not in (None, slots) or dims[2] != num_labels:
        raise ExportError(f"{path}: output {dims}, expected float32 [rows, {slots}, {num_labels}]")


def packed_logits(session, feats: dict, rows_per_run: int, width: int) -> np.ndarray:
    """Every sentence's logits through the packed graph (an ONNX Runtime session), in input order."""
    from tinybert_infer.run.packing import score_packed

    return score_packed(lambda items: ((tag, session.run(None, feeds)[0], 0.0) for feeds, tag in items),
                        feats, rows_per_run, width)


def export_packed_checkpoint(checkpoint, model, references: Dict[str, torch.nn.Module], feats: dict, out_dir: Path,
                             *, opset: int, width: int, tolerance: float) -> Tuple[Path, Path, Dict[str, Tuple[float, float]]]:
    """Both packed graphs, checked and validated before either lands: (plain, simplified, name -> (plain diff,
    simplified diff)) against every reference (unpacked forwards: PyTorch's textbook one, transformers')."""
    import onnxruntime as ort

    from tinybert_infer.export.onnx import check_parity, logit_difference, simplify_onnx, stamp_metadata
    from tinybert_infer.fsutil import staged_files

    final_plain, final_sim = out_dir / packed_onnx_name(), out_dir / packed_sim_onnx_name()
    with torch.inference_mode():
        expected = {name: ref(*(torch.from_numpy(feats[n]) for n in INPUT_NAMES)).numpy()
                    for name, ref in references.items()}
    diffs: Dict[str, list] = {name: [] for name in references}
    with staged_files(final_plain, final_sim) as (plain, sim):
        export_packed_onnx(model, plain, width=width, opset=opset)
        simplify_onnx(plain, sim)
        for staged, final in ((plain, final_plain), (sim, final_sim)):
            check_packed_contract(staged, checkpoint.config.num_labels, width)
            worst = {name: 0.0 for name in references}
            session = ort.InferenceSession(str(staged), providers=["CPUExecutionProvider"])
            for rows in PACKED_CHECK_BATCHES:  # one session, several row counts
                got = packed_logits(session, feats, rows, width)
                for name in references:
                    worst[name] = max(worst[name], logit_difference(expected[name], got))
            for name, value in worst.items():
                check_parity(final, value, tolerance, name, " (packed rows)")
                diffs[name].append(value)
            stamp_metadata(staged, checkpoint)
    return final_plain, final_sim, {name: (v[0], v[1]) for name, v in diffs.items()}
