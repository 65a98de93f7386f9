"""The recommended plan of each precision on the shared SST-2 checkpoint, all 872 dev sentences, against the
PyTorch oracle in ../shared/reference (slow; run with -m slow). Issue 10: fp32 plans give PyTorch's label on every
sentence; bf16's differing labels are counted (and few); int8 stays within 0.5 points of fp32's accuracy."""

import json

import numpy as np
import pytest

from conftest import SHARED

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SHARED / "SST-2_model").is_dir(), reason="../shared not present"),
]
MODEL = SHARED / "SST-2_model"
DATA = SHARED / "glue_dir" / "SST-2"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tinybert_infer.data.features import preprocess
    from tinybert_infer.run.length import read_sample_files
    from tinybert_infer.export.onnx import export_dynamic_checkpoint
    from tinybert_infer.layout import INPUT_NAMES

    path = tmp_path_factory.mktemp("plan_shared")
    preprocess(DATA / "dev.tsv", MODEL / "vocab.txt", path / "bert_bin", show_progress=False)
    dynamic = export_dynamic_checkpoint(MODEL, path, tsv_path=DATA / "dev.tsv").sim_path
    samples = read_sample_files([path / "bert_bin" / n for n in INPUT_NAMES])
    oracle = json.loads((SHARED / "reference" / "sst2_dev_reference_predictions.json").read_text())
    return dynamic, samples, np.array(oracle["preds"]), oracle["accuracy"]


def _recommended(served, precision):
    from tinybert_infer.plan.planner import dev_gate, make_plan, open_plan

    dynamic, samples, _, _ = served
    gate = dev_gate(DATA / "dev.tsv", MODEL / "vocab.txt") if precision != "fp32" else None
    choice = make_plan(dynamic_model=dynamic, precision=precision, batch_size=32, data=samples.feats,
                       checkpoint_dir=MODEL, calibration_tsv=DATA / "test.tsv", rounds=1, gate=gate)
    with open_plan(choice.plan) as executor:
        logits = executor.score(samples.feats)
    labels = np.array([int(line.split("\t")[1]) for line in
                       (DATA / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:] if line.strip()])
    return choice.plan, logits.argmax(1), labels


def test_the_recommended_fp32_plan_gives_pytorchs_label_on_every_dev_sentence(served):
    plan, predicted, gold = _recommended(served, "fp32")
    _, _, oracle, accuracy = served
    assert plan.batching in ("length", "packed")  # real sentence lengths, not the recipe's static 64
    assert predicted.tolist() == oracle.tolist()
    assert float(np.mean(predicted == gold)) == pytest.approx(accuracy)


def test_the_recommended_bf16_plan_differs_from_pytorch_on_few_labels(served):
    plan, predicted, gold = _recommended(served, "bf16")
    _, _, oracle, accuracy = served
    differing = int(np.sum(predicted != oracle))
    print(f"bf16 plan {plan.label()}: {differing} of 872 labels differ from PyTorch")
    assert differing <= 9 and abs(float(np.mean(predicted == gold)) - accuracy) <= 0.005


def test_the_recommended_int8_plan_is_within_half_a_point_of_fp32(served):
    plan, predicted, gold = _recommended(served, "int8")
    _, _, oracle, accuracy = served
    # "within 0.5 points" bounds the loss, as the planner's gate does: int8 on an AMX host scored 0.8979 against
    # fp32's 0.8922 (7 labels differ), which is no loss. Its labels still mostly agree with exact fp32: on an
    # AVX2-only host (Zen 3, no VNNI: int8 products saturate in int16) ORT's dynamic int8 changed 19 of 872
    # (97.8 % agree) at 0.8888 accuracy; a broken or wrong model agrees on far fewer.
    got = float(np.mean(predicted == gold))
    assert accuracy - got <= 0.005, (plan.label(), got, accuracy)
    assert np.mean(predicted == oracle) >= 0.97, plan.label()
