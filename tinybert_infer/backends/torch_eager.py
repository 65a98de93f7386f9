"""PyTorch eager on the checkpoint itself: what a user would run without any export."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from tinybert_infer.models.checkpoint import load_model
from tinybert_infer.backends.base import Backend


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, checkpoint_dir, *, batch_size: Optional[int] = None, threads: Optional[int] = None,
                 head: Optional[str] = None):
        if threads:
            torch.set_num_threads(threads)
        self.checkpoint, self.model = load_model(checkpoint_dir, head=head)
        self.batch_size = batch_size
        self.threads = threads

    @torch.inference_mode()
    def run(self, feeds):
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names]
        return self.model(*args).numpy()

    def describe(self) -> dict:
        info = super().describe()
        info.update(artefact=str(self.checkpoint.weights_file), torch=torch.__version__, head=self.checkpoint.spec.name,
                    threads=self.threads or torch.get_num_threads())
        return info
