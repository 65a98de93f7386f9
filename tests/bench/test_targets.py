"""bench/targets.py: the published figures and the targets live there alone, with their source."""

from pathlib import Path

from tinybert_infer.bench import targets
from tinybert_infer.bench.targets import PUBLISHED, PUBLISHED_BATCH_SIZES

BENCH = Path(targets.__file__).parent


def test_published_figures_are_written_in_targets_py_only():
    figures = [f"{v:.2f}" for card in PUBLISHED["fps"].values() for v in card.values()]
    figures += [str(v) for v in PUBLISHED["accuracy"].values()]
    for module in BENCH.glob("*.py"):
        if module.name == "targets.py":
            continue
        text = module.read_text(encoding="utf-8")
        assert not [f for f in figures if f in text], module.name


def test_every_card_has_every_published_batch_size_and_the_source_is_named():
    assert all(tuple(card) == PUBLISHED_BATCH_SIZES for card in PUBLISHED["fps"].values())
    source = targets.__doc__
    assert "ModelZoo" in source and "../shared/reference" in source
    assert targets.REAL_JOB.sps_4l == PUBLISHED["fps"]["T4"][64]
