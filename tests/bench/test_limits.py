"""bench/limits.py: sustained GEMM rates at a thread count, and a model's samples/s limit from them."""

from __future__ import annotations

import pytest

from tinybert_infer.bench.limits import gemm_rates, limits
from tinybert_infer.models.synthetic import TINYBERT_4L_312D


def test_roofline_rates_and_limits():
    rates = gemm_rates(1, seconds=0.02, sizes=(64, 128))
    assert rates["gflops"]["fp32"] > 0 and rates["gflops"]["int8"] > 0 and rates["threads"] == 1
    # The limit is an upper bound: the best engine at its best size, OpenVINO's among them.
    fp32 = {k: v for k, v in rates["engines"].items() if k.startswith("fp32_")}
    assert {"fp32_torch", "fp32_onnxruntime", "fp32_openvino"} <= set(fp32)
    assert rates["gflops"]["fp32"] == pytest.approx(max(fp32.values()), abs=0.051)
    assert rates["gemm_size"] == "64/128"
    from tinybert_infer.models.config import TinyBertConfig

    cfg = TinyBertConfig(num_labels=2, **TINYBERT_4L_312D)
    assert cfg.flops_per_sample(64) == pytest.approx(0.603e9, rel=2e-3)
    lim = limits({"gflops": {"fp32": 326.0, "int8": None, "bf16": None}}, cfg.flops_per_sample(64))
    assert lim["fp32"] == pytest.approx(541, rel=0.01) and lim["int8"] is None
