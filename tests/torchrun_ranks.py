"""Run a few training steps in two CPU processes under ``torchrun`` (gloo) and collect what each rank saw.

No fixed port: ``torchrun --standalone`` starts its rendezvous store on a port the OS assigns when binding
(``localhost:0``) and the workers' process group reuses that store, so any number of these jobs may run on one
machine at once (parallel CI jobs, two pytest runs) without ``EADDRINUSE``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def torchrun_command(worker: Path, nproc: int = 2) -> list[str]:
    """``python -m torch.distributed.run`` for ``nproc`` local workers, rendezvous on an OS-chosen free port."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", f"--nproc_per_node={nproc}",
            str(worker)]


def torchrun_env() -> dict[str, str]:
    """The environment of the job: one thread per rank, the repository importable, and the workers sharing the
    rendezvous store (its port was bound by the OS) rather than a second port picked by probing."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for var in ("MASTER_ADDR", "MASTER_PORT", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"):
        env.pop(var, None)
    return env


def torchrun_two_cpu_ranks(tmp_path: Path, setup: str) -> list[dict]:
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
    out = subprocess.run(torchrun_command(worker), env=torchrun_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


def state_digest(state) -> str:
    """sha256 of a state dict: every entry's name, dtype, shape and bytes, in name order (parameters and
    buffers), so two ranks, or a rank and a checkpoint, can be compared without shipping tensors around."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def torchrun_node_command(script: Path, args: list[str], *, endpoint: str, run_id: str, node_rank: int,
                          nnodes: int = 2) -> list[str]:
    """One node's agent of a multi-node ``torchrun`` job (c10d rendezvous), one worker on it.

    ``endpoint`` (``127.0.0.1:PORT``) is a TCPStore the caller already serves on a port the OS chose when
    binding; ``is_host=false`` makes every agent a client of it (never a server on that port). The
    rendezvous' rank-0 agent then hosts the workers' store on a second port the OS chooses (``port=0``, shared
    rendezvous store, the default unless ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``) and announces it to the
    workers as MASTER_ADDR (``--local-addr``) and MASTER_PORT. ``--node-rank`` is ignored by the c10d backend
    (the rendezvous numbers the nodes); it is passed for readability."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}", "--nproc-per-node=1",
            f"--node-rank={node_rank}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}",
            f"--rdzv-id={run_id}", "--rdzv-conf=is_host=false,join_timeout=120", "--local-addr=127.0.0.1",
            "--max-restarts=0", str(script), *args]
