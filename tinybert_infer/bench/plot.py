"""benchmark.png: samples/s per backend against the batch size, with each precision's GEMM limit."""

from __future__ import annotations

from pathlib import Path

from tinybert_infer.export.optimize import VARIANTS
from tinybert_infer.bench.verdicts import rate

LIMIT_COLOURS = {"fp32": "black", "int8": "tab:red", "bf16": "tab:purple"}


def render_plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    bss = r["batch_sizes"]
    for n in r["backends"]:
        pts = [(bs, rate(r["rows"], n, bs)) for bs in bss]
        pts = [(b, v) for b, v in pts if v]
        if pts:
            style = "-o" if VARIANTS[n].precision == "fp32" else "--s"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=n)
    for prec, value in r["throughput_model"]["limit_samples_per_s"].items():
        if value:
            ax.axhline(value, color=LIMIT_COLOURS[prec], linestyle=":", linewidth=1.5,
                       label=f"{prec} GEMM limit ({value:.0f}/s)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(bss, [str(b) for b in bss])
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("samples/s")
    shape = r["throughput_model"]["shape"]
    ax.set_title(f"TinyBERT-{shape['num_hidden_layers']}L-{shape['hidden_size']}D seq 64, {r['machine']['threads']} "
                 f"threads, {r['machine']['cpu']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
