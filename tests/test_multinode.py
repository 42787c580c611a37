"""``python -m export.genesis`` on two torchrun nodes (issue 14, "Many nodes"): two agents of one process each,
c10d rendezvous on 127.0.0.1, gloo on CPU, one shared run folder.

Covers: both agents exit 0 and the two ranks (one per agent) end with identical weights, equal to rank 0's
checkpoint; each volume is prepared by exactly one process (volume ``i`` by rank ``i % 2``) and a second job
prepares nothing; a job started again after an interruption (the checkpoint a run leaves when stopped after
epoch 1) resumes on both ranks and ends with the losses and weights of the uninterrupted job.

No fixed port: this process serves the rendezvous TCPStore on a port the OS picks when binding and both agents
join it as clients (``is_host=false``); the agents' own store for the workers and gloo's sockets bind port 0
too (see :func:`torchrun_ranks.torchrun_node_command`). Two jobs of about 30 s each on 2 CPU cores (mostly
imports: four Python processes start torch per job).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from export.common.checkpoint import load_checkpoint
from export.common.loop import CHECKPOINT
from test_genesis_training import CT, TINY_PLAN
from torchrun_ranks import REPO, state_digest, torchrun_env, torchrun_node_command

TIMEOUT_S = 300

#: runs ``export.genesis.__main__.main`` unchanged, with recording wrappers: the volumes this process
#: prepared (``prepare_volume`` calls; ``--workers 1`` prepares in-process), the model ``fit`` trained (the
#: module DDP wraps) and the training result; with a folder ``argv[2]`` it also copies the checkpoint saved
#: after epoch 1 there (what a run stopped after epoch 1 leaves). Then writes ``rank{RANK}.json`` into ``argv[1]``.
WORKER = textwrap.dedent(f"""
    import json, os, shutil, sys
    sys.path.insert(0, {str(REPO)!r}); sys.path.insert(0, {str(REPO / "tests")!r})
    import export.common.loop as loop
    import export.common.prepare as prepare
    import export.genesis.train as genesis_train
    from export.genesis.__main__ import main
    from torchrun_ranks import state_digest

    report_dir, keep_first, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.makedirs(os.path.join(report_dir, "pids"), exist_ok=True)   # for the test's clean-up (see stop_agents)
    open(os.path.join(report_dir, "pids", str(os.getpid())), "w").close()
    prepared, models, results = [], [], []

    real_prepare_volume = prepare.prepare_volume
    def prepare_volume(folder, recipe, job):
        prepared.append(job.key)
        return real_prepare_volume(folder, recipe, job)
    prepare.prepare_volume = prepare_volume

    real_save = loop.save_checkpoint
    def save_checkpoint(path, state):
        saved = real_save(path, state)
        if keep_first and state["epoch"] == 1:
            os.makedirs(keep_first)
            shutil.copyfile(path, os.path.join(keep_first, os.path.basename(path)))
        return saved
    loop.save_checkpoint = save_checkpoint

    real_build = genesis_train.GenesisTask.build_model
    def build_model(self):
        models.append(real_build(self))
        return models[-1]
    genesis_train.GenesisTask.build_model = build_model

    real_train = genesis_train.train
    def train(*args, **kwargs):
        results.append(real_train(*args, **kwargs))
        return results[-1]
    genesis_train.train = train

    code = main(argv)
    report = {{"rank": int(os.environ["RANK"]), "node": int(os.environ["GROUP_RANK"]), "exit": code,
              "prepared": prepared}}
    if models and results:
        report.update(weights=state_digest(models[0].state_dict()), best=state_digest(results[0].best_state),
                      train_loss=results[0].history.train_loss, val_loss=results[0].history.val_loss)
    with open(os.path.join(report_dir, f"rank{{report['rank']}}.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh)
    sys.exit(code)
""")


@pytest.fixture(scope="module")
def rendezvous():
    """A TCPStore served by this process on a port the OS chose (``port=0``): the agents' rendezvous."""
    store = torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    yield f"127.0.0.1:{store.port}"
    del store


def stop_agents(agents: list[subprocess.Popen], reports: Path, worker: Path) -> None:
    """End the agents still running and their workers. torchrun starts each worker in a session of its own,
    so killing an agent's process group would leave its worker behind: SIGTERM makes the agent end its
    workers itself; an agent that does not exit then is killed, and so is any worker still alive (each
    worker recorded its pid under ``reports/pids``; it is killed only while it still runs ``worker``)."""
    running = [a for a in agents if a.poll() is None]
    for a in running:
        a.send_signal(signal.SIGTERM)
    for a in running:
        try:
            a.wait(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(a.pid, signal.SIGKILL)
            a.wait()
    for f in (reports / "pids").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            if str(worker) in Path(f"/proc/{int(f.name)}/cmdline").read_bytes().decode("utf-8", "replace"):
                os.kill(int(f.name), signal.SIGKILL)


def two_nodes(tmp: Path, name: str, endpoint: str, args: list[str], keep_first: Path | None = None
              ) -> tuple[list[dict], str]:
    """Run ``export.genesis`` with ``args`` as a two-node torchrun job (two agents started side by side).
    Returns the two ranks' reports (by rank) and the agents' output (stdout and stderr). A job that runs past
    ``TIMEOUT_S``, or whose other agent is still running 30 s after one failed, is ended."""
    reports = tmp / name
    reports.mkdir()
    worker = tmp / "worker.py"
    worker.write_text(WORKER, encoding="utf-8")
    run_id = f"multinode-{uuid.uuid4().hex}"
    agents, logs = [], []
    try:
        for node in (0, 1):
            log = open(reports / f"agent{node}.log", "w+", encoding="utf-8")
            logs.append(log)
            cmd = torchrun_node_command(worker, [str(reports), str(keep_first or ""), *args], endpoint=endpoint,
                                        run_id=run_id, node_rank=node)
            agents.append(subprocess.Popen(cmd, env=torchrun_env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))
        deadline = time.monotonic() + TIMEOUT_S
        while any(a.poll() is None for a in agents) and time.monotonic() < deadline:
            if any(a.poll() not in (None, 0) for a in agents):
                deadline = min(deadline, time.monotonic() + 30)
            time.sleep(0.2)
    finally:
        stop_agents(agents, reports, worker)
        text = ""
        for node, log in enumerate(logs):
            log.seek(0)
            text += f"----- agent {node}\n{log.read()}"
            log.close()
    assert [a.returncode for a in agents] == [0, 0], text[-6000:]
    ranks = [json.loads((reports / f"rank{r}.json").read_text(encoding="utf-8")) for r in (0, 1)]
    return ranks, text


@pytest.fixture(scope="module")
def runs(tmp_path_factory, rendezvous):
    """Two two-node jobs on two copies of the shipped CT crop: ``straight`` (2 epochs into ``run``; prepares
    the data; rank 0's checkpoint after epoch 1 is copied into ``cut``) and ``resumed`` (the same command
    with ``--out cut``: a run interrupted after epoch 1, started again)."""
    if not CT.exists():
        pytest.fail(f"{CT} is missing: it ships with the package (python -m export.demo_assets rebuilds it)")
    tmp = tmp_path_factory.mktemp("multinode")
    data = tmp / "data"
    data.mkdir()
    for name in ("ct_a.nrrd", "ct_b.nrrd"):   # job order a, b: a (train) is rank 0's, b (val) rank 1's
        shutil.copyfile(CT, data / name)
    plans = json.loads((REPO / "zoo" / "assets" / "demo" / "nnUNetPlans.json").read_text(encoding="utf-8"))
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"] = TINY_PLAN
    plans["configurations"]["3d_fullres"]["normalization_schemes"] = ["CTNormalization"]
    (tmp / "plans.json").write_text(json.dumps(plans), encoding="utf-8")
    prepared = tmp / "prepared"

    def args(out: str) -> list[str]:
        return ["--data", str(data), "--out", str(tmp / out), "--prepared", str(prepared), "--plans",
                str(tmp / "plans.json"), "--preset", "demo", "--cube", "16", "32", "32", "--cubes-per-volume", "12",
                "--batch-size", "2", "--epochs", "2", "--no-progress", "--device", "cpu", "--loader-workers", "0",
                "--workers", "1"]

    seconds = {}
    started = time.perf_counter()
    straight = two_nodes(tmp, "straight", rendezvous, args("run"), keep_first=tmp / "cut")
    seconds["straight"] = time.perf_counter() - started
    first_checkpoint = load_checkpoint(tmp / "cut" / CHECKPOINT)
    started = time.perf_counter()
    resumed = two_nodes(tmp, "resumed", rendezvous, args("cut"))
    seconds["resumed"] = time.perf_counter() - started
    print("two-node job seconds:", {k: round(v, 1) for k, v in seconds.items()})
    return {"tmp": tmp, "prepared": prepared, "straight": straight, "resumed": resumed,
            "first_checkpoint": first_checkpoint}


def test_two_nodes_end_with_identical_weights(runs):
    ranks, _ = runs["straight"]
    assert [r["exit"] for r in ranks] == [0, 0]
    assert sorted(r["node"] for r in ranks) == [0, 1]               # one rank on each agent: really two nodes
    assert ranks[0]["weights"] == ranks[1]["weights"]               # DDP kept the replicas identical
    assert ranks[0]["best"] == ranks[1]["best"]
    assert ranks[0]["train_loss"] == ranks[1]["train_loss"]         # all-reduced
    assert ranks[0]["val_loss"] == ranks[1]["val_loss"] and len(ranks[0]["val_loss"]) == 2
    run = runs["tmp"] / "run"
    checkpoint = load_checkpoint(run / CHECKPOINT)
    assert checkpoint["epoch"] == 2
    assert state_digest(checkpoint["model"]) == ranks[1]["weights"]  # rank 0's checkpoint holds rank 1's weights
    assert sorted(p.name for p in run.iterdir() if p.suffix == ".pt") == [CHECKPOINT]
    assert (run / "model" / "model.safetensors").is_file()


def test_each_volume_is_prepared_by_one_process(runs):
    ranks, text = runs["straight"]
    manifest = json.loads((runs["prepared"] / "manifest.json").read_text(encoding="utf-8"))
    keys = [v["key"] for v in manifest["volumes"]]
    assert [Path(v["sources"][0]["path"]).name for v in manifest["volumes"]] == ["ct_a.nrrd", "ct_b.nrrd"]
    assert [v["role"] for v in manifest["volumes"]] == ["train", "val"] and manifest["failed"] == []
    assert [r["prepared"] for r in ranks] == [[keys[0]], [keys[1]]]   # volume i by rank i % 2, once
    for rank in (0, 1):
        assert f"rank {rank}: preparing 1 of the 1 volumes it owns (2 in all)" in text
    ranks, text = runs["resumed"]                                     # the folder is reused, not redone
    assert [r["prepared"] for r in ranks] == [[], []]
    for rank in (0, 1):
        assert f"rank {rank}: preparing 0 of the 1 volumes it owns (2 in all)" in text


def test_interrupted_run_resumes_on_both_nodes(runs):
    straight, text = runs["straight"]
    resumed, resumed_text = runs["resumed"]
    assert runs["first_checkpoint"]["epoch"] == 1
    assert f"resumed from {runs['tmp'] / 'cut' / CHECKPOINT} at epoch 1" in resumed_text
    assert "resumed from" not in text
    for r in resumed:   # both ranks continued from epoch 1 (a rank starting over would retrain epoch 1)
        assert r["train_loss"][:1] == runs["first_checkpoint"]["history"]["train_loss"]
    assert resumed[0]["weights"] == resumed[1]["weights"]
    assert state_digest(load_checkpoint(runs["tmp"] / "cut" / CHECKPOINT)["model"]) == resumed[0]["weights"]
    # the interrupted-and-resumed run is the uninterrupted one (on CPU, bit for bit)
    np.testing.assert_allclose(resumed[0]["train_loss"], straight[0]["train_loss"], rtol=1e-6)
    np.testing.assert_allclose(resumed[0]["val_loss"], straight[0]["val_loss"], rtol=1e-6)
    final = {name: load_checkpoint(runs["tmp"] / name / CHECKPOINT)["model"] for name in ("run", "cut")}
    torch.testing.assert_close(final["cut"], final["run"], rtol=0, atol=0)
