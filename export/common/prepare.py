"""One preprocessing stage for every pretraining recipe: volumes -> an on-disk data folder read memory-mapped.

Each volume is read, resampled and normalised **once**, by one process, and written as plain numpy ``.npy``
files that training maps into memory (:mod:`.streaming`). A recipe (Genesis, Med3D, the 3D self-supervised
tasks) supplies a :class:`Recipe`: its parameters and a top-level function that turns one :class:`VolumeJob`
into a :class:`PreparedVolume` (arrays plus JSON facts such as cube origins or foreground boxes).

Folder layout (``DATA``: ``--prepared``, by default ``OUT/prepared``)::

    DATA/prep.json                   recipe name, version, parameters and their sha256 (the "digest")
    DATA/volumes/KEY.ARRAY.npy       one .npy per array of a volume ("image" float32 (z, y, x); "label" uint8)
    DATA/records/KEY.json            one record per volume, written after its arrays: sources (path, bytes,
                                     sha256), status ("ok" or "failed" with the reason), shapes, recipe facts
    DATA/manifest.json               every record in job order; deterministic: the same inputs and parameters
                                     give the same bytes (no times, no worker count, no file dates)

Guarantees:

* **Parameters are never silently mixed.** A folder prepared with other parameters is refused with the
  differences named (:class:`PreparedMismatchError`); use another folder.
* **Resumable.** A volume whose record matches its sources (size and modification time, then the stored
  sha256), its job settings and its arrays on disk is skipped.
* **Nothing half-written is trusted.** Arrays and records are written to a temporary name and renamed; a
  volume counts only once its record exists, and the record is written last. A full disk stops the run
  (:class:`PreparationWriteError`) with everything finished so far kept.
* **Bad volumes** (unreadable, too small, wrong modality) get a ``failed`` record naming the reason and are
  left out, or stop the run with ``strict`` (:class:`VolumeFailedError`); finished volumes are kept.
* **Parallel**: ``workers`` single-threaded processes (forked on Linux) with a progress bar.
* **Under torchrun** volume ``i`` is prepared by rank ``i % world`` only; the ranks meet at a barrier on a
  gloo group with a long timeout (preparation can take hours), then all read the same records. ``DATA`` must
  be on a file system every node sees, or be prepared beforehand (``--prepare-only``) on each node.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import errno
import hashlib
import json
import multiprocessing
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from zoo.errors import ZooError
from zoo.hub.integrity import atomic_path, sha256_file
from zoo.json_file import read_json_object

from .distributed import DistInfo

PREP_FILE = "prep.json"
MANIFEST_FILE = "manifest.json"
RECORD_MAX_BYTES = 1 << 20
MANIFEST_MAX_BYTES = 64 << 20
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ARRAY_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class PreparationError(ZooError, ValueError):
    """The preprocessing stage cannot go on."""

    folder: str | None = None


class PreparedMismatchError(PreparationError):
    """The data folder was prepared with other parameters (or by another recipe)."""

    differences: dict | None = None


class PreparedFolderError(PreparationError):
    """A file in the data folder is damaged or missing."""

    path: str | None = None


class VolumeFailedError(PreparationError):
    """A volume failed and ``strict`` is set."""

    path: str | None = None
    reason: str | None = None


class PreparationWriteError(PreparationError):
    """Writing the data folder failed (a full disk, no permission); finished volumes are kept."""

    path: str | None = None


@dataclass(frozen=True)
class VolumeJob:
    """One volume to prepare.

    ``key``: the file-name stem in the data folder (letters, digits, ``._-``; see :func:`job_key`).
    ``sources``: the input files (the image first; Med3D adds the label map). ``role``: ``"train"`` or
    ``"val"``. ``group``: the data set it belongs to (Med3D's domains). ``settings``: JSON values that change
    the result for this volume only (e.g. the target spacing of its data set, its sampling seed).
    """

    key: str
    sources: tuple[str, ...]
    role: str
    group: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not KEY_PATTERN.match(self.key):
            raise ValueError(f"volume key {self.key!r} must match {KEY_PATTERN.pattern}")


@dataclass
class PreparedVolume:
    """What a recipe's prepare function returns for one volume: ``arrays`` (name -> array, written as
    ``KEY.NAME.npy``) and ``facts`` (JSON: shape, spacing, intensity statistics, cube origins ...)."""

    arrays: dict[str, np.ndarray]
    facts: dict[str, Any]


PrepareFn = Callable[[VolumeJob, Mapping[str, Any]], PreparedVolume]


@dataclass(frozen=True)
class Recipe:
    """A recipe's preprocessing: ``name``, ``version`` (raise it when ``prepare`` changes its output),
    ``params`` (JSON values; all of them define the folder) and ``prepare``, a module-level function
    (it runs in worker processes) that raises for a bad volume."""

    name: str
    version: int
    params: Mapping[str, Any]
    prepare: PrepareFn

    @property
    def identity(self) -> dict[str, Any]:
        return {"recipe": self.name, "version": self.version, "params": _jsonable(dict(self.params))}

    @property
    def digest(self) -> str:
        return _digest(self.identity)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def job_key(path: str | os.PathLike, prefix: str = "") -> str:
    """A stable, file-name-safe key for a volume: its cleaned name plus 10 hex digits of the sha256 of its
    absolute path (two files with one name in different folders get different keys; the same file named
    from another working directory keeps its key)."""
    p = Path(os.path.abspath(path))
    name = p.name
    for suffix in (".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd", ".inv3", ".dcm"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", f"{prefix}{name}").strip("._-")[:80] or "volume"
    return f"{clean}-{hashlib.sha256(str(p).encode()).hexdigest()[:10]}"


def job_seed(seed: int, job: VolumeJob) -> list[int]:
    """A numpy seed for a volume's random choices: (seed, the volume's key), so they depend on neither the
    worker nor the order of the volumes nor the working directory."""
    return [int(seed), int(hashlib.sha256(job.key.encode()).hexdigest()[:12], 16)]


# ------------------------------------------------------------------------------------------ records
def _job_digest(recipe_digest: str, job: VolumeJob, sources: list[dict[str, Any]]) -> str:
    """What a volume's arrays depend on: the recipe, its sources' bytes and its settings (not its role)."""
    return _digest({"recipe": recipe_digest, "sources": [s["sha256"] for s in sources],
                    "settings": _jsonable(dict(job.settings))})


def _source_stats(paths: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        st = os.stat(p)
        out.append({"path": p, "bytes": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)})
    return out


def _source_sha(path: str) -> str:
    """sha256 of a file, or of a DICOM folder's files in name order."""
    p = Path(path)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.iterdir() if q.is_file()):
            h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
        return h.hexdigest()
    return sha256_file(p)


def array_path(folder: Path, key: str, name: str) -> Path:
    return folder / "volumes" / f"{key}.{name}.npy"


def record_path(folder: Path, key: str) -> Path:
    return folder / "records" / f"{key}.json"


def _write_json(path: Path, value: Any) -> None:
    text = json.dumps(value, indent=1, sort_keys=True) + "\n"
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as err:
        raise _write_error(path, err) from None


def _write_error(path: Path, err: OSError) -> PreparationWriteError:
    why = "the disk is full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else (err.strerror or str(err))
    return PreparationWriteError(f"cannot write {path}: {why}. Volumes finished so far are kept; free space "
                                 "(or fix the folder's permissions) and run the same command again to go on",
                                 path=path, folder=path.parent.parent)


def _read_record(folder: Path, key: str) -> dict[str, Any] | None:
    path = record_path(folder, key)
    if not path.is_file():
        return None
    return read_json_object(path, what="volume record", max_bytes=RECORD_MAX_BYTES, error=PreparedFolderError,
                            fix="delete it to prepare that volume again")


def _arrays_intact(folder: Path, key: str, record: Mapping[str, Any]) -> bool:
    arrays = record.get("arrays")
    if not isinstance(arrays, dict) or not arrays:
        return False
    for name, spec in arrays.items():
        if not isinstance(name, str) or not ARRAY_NAME_PATTERN.match(name) or not isinstance(spec, dict):
            return False
        try:
            a = np.load(array_path(folder, key, name), mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return False
        if list(a.shape) != spec.get("shape") or str(a.dtype) != spec.get("dtype"):
            return False
    return True


def _reusable(folder: Path, job: VolumeJob, recipe_digest: str, record: Mapping[str, Any] | None) -> bool:
    """True when ``record`` is a finished, current result for ``job``: same sources (size and date, which
    imply the stored sha256), same job digest, arrays on disk with the recorded shapes."""
    if record is None or record.get("status") != "ok":
        return False
    try:
        stats = _source_stats(job.sources)
    except OSError:
        return False
    stored = record.get("sources")
    if not isinstance(stored, list) or len(stored) != len(stats):
        return False
    for now, then in zip(stats, stored):
        if not isinstance(then, dict) or any(then.get(k) != now[k] for k in ("bytes", "mtime_ns")) \
                or os.path.abspath(str(then.get("path"))) != os.path.abspath(now["path"]):
            return False
    digest = _job_digest(recipe_digest, job, stored)
    return record.get("job_digest") == digest and _arrays_intact(folder, job.key, record)


# ------------------------------------------------------------------------------------------ one volume
def _limit_threads() -> None:
    """One thread per preparing process: ``workers`` processes then use ``workers`` cores."""
    with contextlib.suppress(Exception):
        import torch

        torch.set_num_threads(1)


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prepare_volume(folder: Path, recipe: Recipe, job: VolumeJob) -> dict[str, Any]:
    """Prepare one volume and write its arrays (not its record); returns the record.

    A failure to read or use the volume (:class:`ZooError`, ``ValueError``, ``OSError`` while reading) gives
    a ``failed`` record with the reason; a failure to write raises :class:`PreparationWriteError`.
    """
    record: dict[str, Any] = {"key": job.key, "role": job.role, "group": job.group,
                              "settings": _jsonable(dict(job.settings))}
    try:
        stats = _source_stats(job.sources)
        sources = [{**s, "sha256": _source_sha(s["path"])} for s in stats]
    except OSError as err:
        return {**record, "sources": [{"path": p} for p in job.sources], "status": "failed",
                "reason": f"cannot read {err.filename or job.sources[0]}: {err.strerror or err}"}
    record.update(sources=sources, job_digest=_job_digest(recipe.digest, job, sources))
    try:
        result = recipe.prepare(job, recipe.params)
    except (ZooError, ValueError, OSError, MemoryError) as err:
        reason = str(err) or type(err).__name__
        return {**record, "status": "failed", "reason": reason}
    arrays = {}
    for name, array in sorted(result.arrays.items()):
        if not ARRAY_NAME_PATTERN.match(name):
            raise ValueError(f"array name {name!r} must match {ARRAY_NAME_PATTERN.pattern}")
        a = np.ascontiguousarray(array)
        path = array_path(folder, job.key, name)
        try:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, a, allow_pickle=False)
        except OSError as err:
            raise _write_error(path, err) from None
        arrays[name] = {"shape": list(a.shape), "dtype": str(a.dtype)}
    return {**record, "status": "ok", "arrays": arrays, "facts": _jsonable(result.facts)}


def _pool_task(folder: str, recipe: Recipe, job: VolumeJob) -> dict[str, Any]:
    return prepare_volume(Path(folder), recipe, job)


# ------------------------------------------------------------------------------------------ the folder
@dataclass
class Manifest:
    """The prepared data folder as training sees it: the records of the volumes that are ``ok`` in job
    order (``volumes``), those that ``failed``, and the recipe's identity."""

    folder: Path
    identity: dict[str, Any]
    volumes: list[dict[str, Any]]
    failed: list[dict[str, Any]]

    def path(self, record: Mapping[str, Any], name: str = "image") -> Path:
        """The ``.npy`` file of array ``name`` of a volume (the key is checked, never used as a path)."""
        key = str(record["key"])
        if not KEY_PATTERN.match(key) or not ARRAY_NAME_PATTERN.match(name):
            raise PreparedFolderError(f"{self.folder}: bad volume key {key!r} or array name {name!r}",
                                      folder=self.folder)
        return array_path(self.folder, key, name)

    def role(self, role: str) -> list[dict[str, Any]]:
        return [v for v in self.volumes if v["role"] == role]

    def to_dict(self) -> dict[str, Any]:
        return {**self.identity, "digest": _digest(self.identity), "volumes": self.volumes, "failed": self.failed}


def _check_prep_file(folder: Path, recipe: Recipe) -> bool:
    """True when ``DATA/prep.json`` exists and matches ``recipe``; raises when it exists and differs."""
    path = folder / PREP_FILE
    if not path.is_file():
        return False
    stored = read_json_object(path, what="prepared-data description", max_bytes=RECORD_MAX_BYTES,
                              error=PreparedFolderError, fix=f"delete {folder} to prepare the data again")
    if stored.get("digest") == recipe.digest:
        return True
    mine = recipe.identity
    diffs: dict[str, Any] = {}
    for k in ("recipe", "version"):
        if stored.get(k) != mine[k]:
            diffs[k] = {"folder": stored.get(k), "now": mine[k]}
    theirs = stored.get("params") if isinstance(stored.get("params"), dict) else {}
    for k in sorted(set(theirs) | set(mine["params"])):
        if theirs.get(k) != mine["params"].get(k):
            diffs[k] = {"folder": theirs.get(k), "now": mine["params"].get(k)}
    shown = "; ".join(f"{k}: {v['folder']!r} there, {v['now']!r} now" for k, v in list(diffs.items())[:6])
    raise PreparedMismatchError(
        f"{folder} was prepared with other parameters ({shown or 'another version'}); it is never reused "
        "silently: pass another --prepared folder (or delete this one to prepare it again)",
        folder=folder, differences=diffs)


_PREP_GROUP = None   # the gloo group of :func:`_barrier`, made on first use


def _barrier(info: DistInfo) -> None:
    """A barrier on a gloo group with a one-week timeout (preparation may take hours; the default process
    group's timeout is meant for training steps)."""
    if info.world <= 1:
        return
    import torch.distributed as dist

    global _PREP_GROUP
    if _PREP_GROUP is None:
        _PREP_GROUP = dist.new_group(backend="gloo", timeout=timedelta(days=7))
    try:
        dist.barrier(group=_PREP_GROUP)
    except RuntimeError as err:   # gloo: "Connection closed by peer" when another rank has died
        raise PreparationError(f"rank {info.rank}: another process of this torchrun job stopped while the data was "
                               f"being prepared (its error is printed above; gloo said: {str(err).splitlines()[0]})"
                               ) from None


def prepare_folder(recipe: Recipe, jobs: Sequence[VolumeJob], folder: str | os.PathLike, *, workers: int = 1,
                   strict: bool = False, info: DistInfo | None = None, progress: bool = True,
                   log: Callable[[str], None] = print) -> Manifest:
    """Prepare every job into ``folder`` (see the module docstring) and return its :class:`Manifest`.

    ``workers``: processes per rank (1: in this process). ``strict``: the first failed volume stops the run
    (:class:`VolumeFailedError`); the volumes finished by then keep their records (one still under way in
    another worker is prepared again by the next run).
    """
    info = info or DistInfo()
    folder = Path(folder)
    keys = [j.key for j in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError("two volumes share a key; pass each file once")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_error(folder / PREP_FILE, err) from None
    if info.main and not _check_prep_file(folder, recipe):
        _write_json(folder / PREP_FILE, {**recipe.identity, "digest": recipe.digest})
    _barrier(info)
    if not info.main:
        _check_prep_file(folder, recipe)

    mine = [j for i, j in enumerate(jobs) if i % info.world == info.rank]
    todo = []
    for job in mine:
        record = _read_record(folder, job.key)
        if not _reusable(folder, job, recipe.digest, record):
            todo.append(job)
        elif (record["role"], record["group"], [x["path"] for x in record["sources"]]) != \
                (job.role, job.group, list(job.sources)):   # a new split, or paths typed from elsewhere
            sources = [{**x, "path": p} for x, p in zip(record["sources"], job.sources)]
            _write_json(record_path(folder, job.key), {**record, "role": job.role, "group": job.group,
                                                       "sources": sources})
    if info.world > 1:   # every rank says what it does (the log of the other ranks is usually silenced)
        print(f"rank {info.rank}: preparing {len(todo)} of the {len(mine)} volumes it owns ({len(jobs)} in all)",
              file=sys.stderr, flush=True)
    elif len(mine) > len(todo):
        log(f"{folder}: {len(mine) - len(todo)} of {len(mine)} volumes already prepared with these parameters")
    _run(folder, recipe, todo, workers, strict, progress and info.main, log)
    _barrier(info)        # a rank that failed never gets here: the others then fail at the barrier, clearly
    return _assemble(folder, recipe, jobs, write=info.main)


def _run(folder: Path, recipe: Recipe, todo: Sequence[VolumeJob], workers: int, strict: bool, progress: bool,
         log: Callable[[str], None]) -> None:
    if not todo:
        return
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"preparing {recipe.name} volumes", unit="volume")
    failure: dict[str, Any] | None = None

    def finish(job: VolumeJob, record: dict[str, Any]) -> None:
        nonlocal failure
        _write_json(record_path(folder, job.key), record)
        if bar is not None:
            bar.update(1)
        if record["status"] != "ok":
            log(f"left out: {_named(job.sources[0], record['reason'])}")
            failure = failure or record

    try:
        if workers <= 1:
            with _single_thread():
                for job in todo:
                    finish(job, prepare_volume(folder, recipe, job))
                    if strict and failure:
                        break
        else:
            # fork (Linux): workers start at once, with everything imported; like DataLoader workers they run
            # torch single-threaded, so no OpenMP pool is used after the fork
            ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_limit_threads) as pool:
                futures = {pool.submit(_pool_task, str(folder), recipe, job): job for job in todo}
                try:
                    for fut in cf.as_completed(futures):
                        finish(futures[fut], fut.result())
                        if strict and failure:
                            for f in futures:
                                f.cancel()
                            for f, job in futures.items():       # keep what is already finished
                                if f.done() and not f.cancelled() and f is not fut and f.exception() is None \
                                        and not record_path(folder, job.key).is_file():
                                    finish(job, f.result())
                            break
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    finally:
        if bar is not None:
            bar.close()
    if strict and failure:
        path = failure["sources"][0]["path"]
        raise VolumeFailedError(f"{_named(path, failure['reason'])} (--strict stops at the first bad volume; without "
                                "it such volumes are named and left out). Volumes finished so far are kept",
                                folder=folder, path=path, reason=failure["reason"])


def _named(path: str, reason: str) -> str:
    """``"PATH: reason"``, without repeating the path when the reason already starts with it."""
    return reason if reason.startswith(path) else f"{path}: {reason}"


def _assemble(folder: Path, recipe: Recipe, jobs: Sequence[VolumeJob], write: bool) -> Manifest:
    volumes, failed = [], []
    for job in jobs:
        record = _read_record(folder, job.key)
        if record is None:
            raise PreparedFolderError(
                f"{record_path(folder, job.key)} is missing after preparation: under torchrun on several nodes "
                f"{folder} must be on a file system all nodes see (or prepare it on each node beforehand with "
                "--prepare-only)", folder=folder, path=record_path(folder, job.key))
        public = {k: v for k, v in record.items() if k != "sources"}
        public["sources"] = [{k: s.get(k) for k in ("path", "bytes", "sha256")} for s in record.get("sources", [])]
        (volumes if record.get("status") == "ok" else failed).append(public)
    manifest = Manifest(folder, recipe.identity, volumes, failed)
    if write:
        _write_json(folder / MANIFEST_FILE, manifest.to_dict())
    return manifest


def open_prepared(folder: str | os.PathLike, recipe: Recipe) -> Manifest:
    """The manifest of a folder prepared before (``--prepare-only``), checked against ``recipe``."""
    folder = Path(folder)
    if not _check_prep_file(folder, recipe):
        raise PreparedFolderError(f"{folder} holds no prepared data ({PREP_FILE} is missing); prepare it with "
                                  "--prepare-only, or pass --data", folder=folder)
    data = read_json_object(folder / MANIFEST_FILE, what="prepared-data manifest", max_bytes=MANIFEST_MAX_BYTES,
                            error=PreparedFolderError, fix="run the preparation again to rewrite it")
    volumes, failed = data.get("volumes"), data.get("failed", [])
    if data.get("digest") != recipe.digest or not isinstance(volumes, list) or not isinstance(failed, list):
        raise PreparedFolderError(f"{folder / MANIFEST_FILE} does not belong to {folder / PREP_FILE}; run the "
                                  "preparation again", folder=folder, path=folder / MANIFEST_FILE)
    for v in volumes:
        if not isinstance(v, dict) or not isinstance(v.get("key"), str) or not KEY_PATTERN.match(v["key"]):
            raise PreparedFolderError(f"{folder / MANIFEST_FILE}: a volume entry without a valid key",
                                      folder=folder, path=folder / MANIFEST_FILE)
    return Manifest(folder, recipe.identity, volumes, failed)


def source_summary(manifest: Manifest) -> list[dict[str, str]]:
    """Every source file with its sha256, role and cube count, for the provenance in config.json."""
    out = []
    for v in manifest.volumes:
        boxes = (v.get("facts") or {}).get("boxes")
        for s in v["sources"]:
            out.append({"path": str(s["path"]), "sha256": str(s["sha256"]),
                        "role": f"{v['group']} {v['role']}".strip(),
                        "cubes": str(len(boxes)) if isinstance(boxes, list) else ""})
    return out
