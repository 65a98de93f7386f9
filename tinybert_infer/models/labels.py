"""Which dataset label each output of a checkpoint stands for.

A Hugging Face checkpoint names its outputs in config.json's id2label; nothing says that output 0 is SST-2's
label 0 (GLUE: 0 = negative, 1 = positive). A checkpoint trained with {0: "POSITIVE", 1: "NEGATIVE"} would
score 8 % instead of 92 %, and label an unlabelled corpus backwards, with exit 0. So the names are read once,
here, and the classifier's rows are put into dataset order when the checkpoint is loaded: every graph exported
from it (ONNX, OM, TensorRT) and every runtime then gives logit k = dataset label k, and postprocessing needs
no model to score a result folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from tinybert_infer.errors import CheckpointError

# What each SST-2 label value means (GLUE's SST-2 processor: "0" negative, "1" positive).
SST2_MEANINGS = {0: ("negative", "neg"), 1: ("positive", "pos")}
_NUMBERED = re.compile(r"^(?:label[ _-]?)?(\d+)$")


def dataset_label_of(name: str, num_labels: int) -> Optional[int]:
    """The dataset label a model's output name stands for: "1", "LABEL_1" -> 1; for two outputs, SST-2's
    sentiment words ("NEGATIVE", "pos") -> their value; None when the name does not say."""
    key = str(name).strip().lower()
    numbered = _NUMBERED.match(key)
    if numbered is not None:
        value = int(numbered[1])
        return value if value < num_labels else None
    if num_labels == len(SST2_MEANINGS):
        for value, words in SST2_MEANINGS.items():
            if key in words:
                return value
    return None


def model_output_names(raw_config: dict, config_path: Path = Path("config.json")) -> dict:
    """config.json's id2label as {output index: name}; empty when absent."""
    id2label = raw_config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        return {}
    try:
        return {int(index): str(name) for index, name in id2label.items()}
    except (TypeError, ValueError):
        raise CheckpointError(f"{config_path}: id2label keys {list(id2label)!r} are not output indices") from None


def output_order(raw_config: dict, num_labels: int, config_path: Path) -> tuple:
    """For dataset label k, the checkpoint's output index that scores it (identity when id2label is absent
    or already in dataset order). Names that do not say which dataset label they are, or that name one twice,
    are refused: guessing would give silently wrong labels."""
    names = model_output_names(raw_config, config_path)
    if not names:
        return tuple(range(num_labels))
    if sorted(names) != list(range(num_labels)):
        raise CheckpointError(f"{config_path}: id2label names outputs {sorted(names)}, the classifier has "
                              f"{num_labels} (0..{num_labels - 1})")
    labels = {index: dataset_label_of(name, num_labels) for index, name in names.items()}
    if None in labels.values() or len(set(labels.values())) != num_labels:
        meanings = ", ".join(f"{v} = {words[0]}" for v, words in SST2_MEANINGS.items())
        raise CheckpointError(f"{config_path}: id2label {dict(sorted(names.items()))!r} does not say which dataset "
                              f"label each output is (SST-2: {meanings}); name them e.g. \"negative\"/\"positive\" "
                              f"or \"LABEL_0\"/\"LABEL_1\"")
    by_label = {label: index for index, label in labels.items()}
    return tuple(by_label[k] for k in range(num_labels))


def reorder_classifier(state: dict, order: tuple) -> dict:
    """The state with classifier rows in dataset order (row k = the output that scores dataset label k)."""
    if order == tuple(range(len(order))):
        return state
    state = dict(state)
    for key in ("classifier.weight", "classifier.bias"):
        state[key] = state[key][list(order)].clone()
    return state


def labels_record(raw_config: dict, order: tuple) -> list:
    """What a run records: for dataset label k (in output order), the checkpoint's own name and output index."""
    names = model_output_names(raw_config)
    return [{"label": k, "model_output": index, "model_name": names.get(index, f"LABEL_{index}")}
            for k, index in enumerate(order)]
