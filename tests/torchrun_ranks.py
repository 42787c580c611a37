"""Run a few training steps in two CPU processes under ``torchrun`` (gloo) and collect what each rank saw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def torchrun_two_cpu_ranks(tmp_path: Path, setup: str, port: int) -> list[dict]:
    """Run ``setup`` (Python source that leaves a :class:`export.common.loop.FitResult` in ``result``, training
    into the folder ``RUN``) as a 2-process ``torchrun`` job. Returns, per rank, the sha256 of the whole best
    state dict (parameters and buffers: DDP broadcasts rank 0's buffers, so BatchNorm statistics agree too), the
    training loss curve and the training metrics. The run folder is ``tmp_path / "run"``."""
    worker = tmp_path / "worker.py"
    worker.write_text(
        textwrap.dedent(f"""
            import hashlib, json, os, sys
            sys.path.insert(0, {str(REPO)!r}); sys.path.insert(0, {str(REPO / 'tests')!r})
            RUN = {str(tmp_path / 'run')!r}
        """)
        + textwrap.dedent(setup)
        + textwrap.dedent(f"""
            digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in result.best_state.values())).hexdigest()
            open({str(tmp_path)!r} + f"/rank{{os.environ['RANK']}}.json", "w").write(json.dumps(
                {{"digest": digest, "train_loss": result.history.train_loss,
                  "train_metrics": result.history.train_metrics}}))
            import torch.distributed as dist
            dist.destroy_process_group()
        """)
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                          str(worker)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
