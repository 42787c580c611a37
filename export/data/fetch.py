"""Fetch the real CT/MR volumes that ship inside PyPI and Debian packages (``docs/public-data.md``).

Run::

    python -m export.data.fetch --out DATA_DIR [--what ct,mr]

``--what`` takes source names or groups, comma-separated (default ``all``):

============  ======================================================================  =========================
name          what lands in ``DATA_DIR/<name>/``                                       obtained with
============  ======================================================================  =========================
pyradiomics   ``{lung1,lung2}_{image,label}.nrrd`` (chest CT), ``brain{1,2}_*.nrrd``    ``pip download`` of the
              (brain MR), ``breast1_*.nrrd`` (breast MR), ``LICENSE.txt`` (BSD-3)      pyradiomics 3.0.1 sdist
invesalius    ``Cranium.inv3`` (head CT, InVesalius project), ``copyright`` (GPL-2)    ``apt-get download``
mricron       ``ch2.nii.gz``, ``ch2bet.nii.gz`` (Colin27 T1 MR), ``aal.nii.gz`` +      ``apt-get download``
              ``aal.nii.txt`` (116 labels), ``copyright`` (BSD-3)
ct / mr       groups: ``ct`` = pyradiomics + invesalius, ``mr`` = pyradiomics + mricron
============  ======================================================================  =========================

Every volume is checked against the sha256 pinned below (licence texts are not pinned: they may be
reworded), and every output file is recorded (sha256, size, source, licence) in ``DATA_DIR/manifest.json``. Running again skips every source whose files are all present and verified,
so the command is idempotent and cheap. Nothing is installed system-wide: the Debian packages are unpacked
with ``dpkg-deb -x`` into a temporary folder; pip's ``--no-build-isolation`` metadata step imports numpy
and versioneer, so those (and setuptools; wheel only for setuptools < 70.1) are installed into the running
environment first when missing. The sdist's sha256 is verified before anything is extracted from it.

Measured on the 2-core build machine: pyradiomics about 1 s (0.9 s even with ``PIP_NO_CACHE_DIR=1``:
the 34 MB sdist comes fast from PyPI), everything 2.5-3.6 s, a second run (all verified) 0.1 s;
56 MB on disk in all.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import ChecksumError, ZooError

__all__ = ["FetchError", "SOURCES", "fetch", "main", "resolve_sources", "sha256_file"]

PYRADIOMICS_VERSION = "3.0.1"
PYRADIOMICS_SDIST = f"pyradiomics-{PYRADIOMICS_VERSION}.tar.gz"
PYRADIOMICS_SDIST_SHA256 = "47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5"
PYRADIOMICS_SDIST_SIZE = 34_473_030
BUILD_MODULES = {"numpy": "numpy", "versioneer": "versioneer", "setuptools": "setuptools", "wheel": "wheel"}


class FetchError(ZooError, RuntimeError):
    """A download tool is missing or failed; the message says what to install or run."""


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    license: str
    files: dict          # output name -> (path inside the package, pinned sha256)


SOURCES = {
    "pyradiomics": Source(
        "pyradiomics", f"pyradiomics=={PYRADIOMICS_VERSION} sdist (PyPI), data/*.nrrd", "BSD-3-Clause",
        {   # pinned sha256 of each volume; licence texts are recorded but not pinned (they may be reworded)
            "brain1_image.nrrd": ("data/brain1_image.nrrd",
                              "fffdb111ee8b428ede7256707393c927a7d5be912f0604cf3c6f1bd5fc9644cf"),
            "brain1_label.nrrd": ("data/brain1_label.nrrd",
                              "ae6d8e6b84f7e99d68c210ee2fa6aaaefa0b2df0a84f55efca4feebe2b216059"),
            "brain2_image.nrrd": ("data/brain2_image.nrrd",
                              "d35a1c6a3e1eb72bae97c5515472fbe057fb38ee8e1e199215d1c3c6f292332e"),
            "brain2_label.nrrd": ("data/brain2_label.nrrd",
                              "15189c024936ecc337649b9a10c475117c7c40df0d53c22163f9a2023ed741a5"),
            "breast1_image.nrrd": ("data/breast1_image.nrrd",
                              "0e8b668f3ce9b9aacff20dc3c216866f43069ff96b269fb45b76f5e205a431e2"),
            "breast1_label.nrrd": ("data/breast1_label.nrrd",
                              "07085bb0e36a956de5bd1c1c1b5f8bdf2ce80952125b13cbd352412c108c8950"),
            "lung1_image.nrrd": ("data/lung1_image.nrrd",
                              "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed"),
            "lung1_label.nrrd": ("data/lung1_label.nrrd",
                              "e9d9a88054d7bc1d3034193ff907ce6b8c6ba28a7bc3a16f23728982d1b6b50a"),
            "lung2_image.nrrd": ("data/lung2_image.nrrd",
                              "aa2b94eec79127ed786798ac8dc3c013010e1692d5787bebfae1a1e9685a4651"),
            "lung2_label.nrrd": ("data/lung2_label.nrrd",
                              "cef52738dc51aab69a48fe30639da956d2b911b1c2920439c091fab84727657a"),
            "LICENSE.txt": ("LICENSE.txt", None),
        }),
    "invesalius": Source(
        "invesalius", "Debian package invesalius-examples (main)", "GPL-2.0",
        {
            "Cranium.inv3": ("usr/share/doc/invesalius-examples/examples/Cranium.inv3",
                              "3b34f11f7c4f557f4c65cd6543c412a2f6ceb0cfecfd9c41184420e02d9b7e2a"),
            "copyright": ("usr/share/doc/invesalius-examples/copyright", None),
        }),
    "mricron": Source(
        "mricron", "Debian package mricron-data (main)", "BSD-3-Clause",
        {
            "ch2.nii.gz": ("usr/share/mricron/templates/ch2.nii.gz",
                              "a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309"),
            "ch2bet.nii.gz": ("usr/share/mricron/templates/ch2bet.nii.gz",
                              "592a2d20abdf36eefcb540ca8958428040edffc1bc1a18ba1dcfbabac77c5dd1"),
            "aal.nii.gz": ("usr/share/mricron/templates/aal.nii.gz",
                              "b512dcd3f36b77f56be7a9a038134096e66314b7e8c31d25875b96bcf6991454"),
            "aal.nii.txt": ("usr/share/mricron/templates/aal.nii.txt", None),
            "copyright": ("usr/share/doc/mricron-data/copyright", None),
        }),
}
DEBIAN_PACKAGES = {"invesalius": "invesalius-examples", "mricron": "mricron-data"}
GROUPS = {"all": ("pyradiomics", "invesalius", "mricron"), "ct": ("pyradiomics", "invesalius"),
          "mr": ("pyradiomics", "mricron")}


# --------------------------------------------------------------------------------------------- utils
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_sources(what) -> list[str]:
    """``"ct,mr"`` or ``["pyradiomics"]`` -> ordered list of source names."""
    items = what.split(",") if isinstance(what, str) else list(what)
    out: list[str] = []
    for item in (i.strip().lower() for i in items):
        if not item:
            continue
        names = GROUPS.get(item, (item,))
        for n in names:
            if n not in SOURCES:
                raise ValueError(f"unknown source {item!r}; choose from {sorted(SOURCES) + sorted(GROUPS)}")
            if n not in out:
                out.append(n)
    if not out:
        raise ValueError("nothing to fetch: --what is empty")
    return out


class _Log:
    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[fetch {time.perf_counter() - self.t0:6.1f}s] {msg}", flush=True)


def _run(cmd, cwd=None) -> subprocess.CompletedProcess:
    # pip and apt print UTF-8 (progress bars, quotes) whatever the locale: never let decoding fail
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, encoding="utf-8", errors="replace")


def _tail(text: str, n: int = 12) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def _load_manifest(out: Path) -> dict:
    path = out / "manifest.json"
    if path.exists():
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict) and isinstance(data.get("files"), dict):
                return data
        except (OSError, ValueError):
            pass
    return {"format": 1, "files": {}}


def _save_manifest(out: Path, manifest: dict) -> None:
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / "manifest.json")


def _verified(out: Path, src: Source, manifest: dict) -> bool:
    """All files of ``src`` present with the pinned (or, when none is pinned, the recorded) sha256."""
    for name, (_, pinned) in src.files.items():
        rel = f"{src.name}/{name}"
        path = out / rel
        expected = pinned or manifest["files"].get(rel, {}).get("sha256")
        if not path.is_file() or expected is None or sha256_file(path) != expected:
            return False
    return True


def _install(out: Path, src: Source, name: str, data_or_path, manifest: dict) -> None:
    """Write one output file atomically, check its pinned sha256, record it in the manifest."""
    rel = f"{src.name}/{name}"
    dest = out / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    if isinstance(data_or_path, (bytes, bytearray)):
        tmp.write_bytes(data_or_path)
    else:
        shutil.copyfile(data_or_path, tmp)
    digest = sha256_file(tmp)
    pinned = src.files[name][1]
    if pinned is not None and digest != pinned:
        tmp.unlink()
        raise ChecksumError(f"{rel}: sha256 {digest} differs from the pinned {pinned}; the upstream package "
                            f"changed. Check it and update the pin in export/data/fetch.py")
    os.replace(tmp, dest)
    manifest["files"][rel] = {"sha256": digest, "size": dest.stat().st_size, "source": src.description,
                              "license": src.license}


# -------------------------------------------------------------------------------------- pyradiomics
def _ensure_build_modules(log) -> None:
    if importlib.util.find_spec("pip") is None:
        raise FetchError(f"pip is not available in {sys.executable}; install it (python -m ensurepip --upgrade, "
                         f"or apt-get install python3-pip) and run again")
    missing = [pkg for mod, pkg in BUILD_MODULES.items() if importlib.util.find_spec(mod) is None]
    if "wheel" in missing and _setuptools_has_bdist_wheel():
        missing.remove("wheel")           # setuptools >= 70.1 builds wheels itself
    if missing:
        log(f"installing {', '.join(missing)} (pip's metadata step of the pyradiomics sdist imports them)")
        r = _run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *missing])
        if r.returncode != 0:
            raise FetchError(f"could not install {missing} with pip:\n{_tail(r.stderr or r.stdout)}\n"
                             f"Install them yourself ({sys.executable} -m pip install {' '.join(missing)}) and run "
                             f"again")
        importlib.invalidate_caches()


def _setuptools_has_bdist_wheel() -> bool:
    """setuptools >= 70.1 ships its own bdist_wheel (checked on disk: importing setuptools here would
    interfere with distutils)."""
    spec = importlib.util.find_spec("setuptools")
    if spec is None or not spec.submodule_search_locations:
        return False
    return any((Path(p) / "command" / "bdist_wheel.py").is_file() for p in spec.submodule_search_locations)


def _fetch_pyradiomics(out: Path, src: Source, manifest: dict, tmp: Path, log) -> None:
    _ensure_build_modules(log)
    log(f"pip download {PYRADIOMICS_SDIST} (34 MB; pip's cache makes repeats fast)")
    r = _run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
              "--no-build-isolation", "-d", str(tmp), f"pyradiomics=={PYRADIOMICS_VERSION}"])
    sdist = tmp / PYRADIOMICS_SDIST
    if r.returncode != 0 or not sdist.is_file():
        raise FetchError(f"pip download pyradiomics=={PYRADIOMICS_VERSION} failed (is PyPI reachable?):\n"
                         f"{_tail(r.stderr or r.stdout)}")
    digest = sha256_file(sdist)
    if digest != PYRADIOMICS_SDIST_SHA256:
        raise ChecksumError(f"{PYRADIOMICS_SDIST}: sha256 {digest}, expected {PYRADIOMICS_SDIST_SHA256}; not "
                            f"extracting it")
    log(f"sdist verified (sha256 {digest[:12]}..., {sdist.stat().st_size:,} bytes); extracting data/*.nrrd")
    prefix = f"pyradiomics-{PYRADIOMICS_VERSION}/"
    wanted = {prefix + inner: name for name, (inner, _) in src.files.items()}
    found = set()
    with tarfile.open(sdist, "r:gz") as tf:
        for member in tf:
            name = wanted.get(member.name)
            if name is None or not member.isfile():
                continue
            _install(out, src, name, tf.extractfile(member).read(), manifest)
            found.add(name)
    missing = sorted(set(src.files) - found)
    if missing:
        raise FetchError(f"{PYRADIOMICS_SDIST} does not hold {missing}")


# ------------------------------------------------------------------------------------------- Debian
def _fetch_debian(out: Path, src: Source, manifest: dict, tmp: Path, log) -> None:
    package = DEBIAN_PACKAGES[src.name]
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise FetchError(f"{tool} not found: the {src.name} volumes come from the Debian package {package}, "
                             f"which needs a Debian/Ubuntu system with apt (apt-get, dpkg-deb). Skip it with "
                             f"--what pyradiomics, or fetch {package}_*.deb by hand")
    log(f"apt-get download {package}")
    r = _run(["apt-get", "download", package], cwd=tmp)
    if r.returncode != 0:
        log(f"apt-get download failed ({_tail(r.stderr, 1)}); running apt-get update and retrying")
        u = _run(["apt-get", "update"])
        if u.returncode != 0:
            hint = "" if os.geteuid() == 0 else " (apt-get update needs root: run it with sudo first)"
            raise FetchError(f"apt-get update failed{hint}:\n{_tail(u.stderr or u.stdout)}")
        r = _run(["apt-get", "download", package], cwd=tmp)
        if r.returncode != 0:
            raise FetchError(f"apt-get download {package} failed (is the Debian 'main' archive configured and "
                             f"reachable?):\n{_tail(r.stderr or r.stdout)}")
    debs = sorted(tmp.glob(f"{package}_*.deb"))
    if not debs:
        raise FetchError(f"apt-get download {package} left no .deb in {tmp}")
    root = tmp / f"{package}-root"
    log(f"dpkg-deb -x {debs[-1].name}")
    x = _run(["dpkg-deb", "-x", str(debs[-1]), str(root)])
    if x.returncode != 0:
        raise FetchError(f"dpkg-deb -x {debs[-1].name} failed:\n{_tail(x.stderr)}")
    for name, (inner, _) in src.files.items():
        path = root / inner
        if not path.is_file():
            raise FetchError(f"{debs[-1].name} does not hold {inner}")
        _install(out, src, name, path, manifest)
    manifest.setdefault("packages", {})[src.name] = debs[-1].name


# ---------------------------------------------------------------------------------------------- API
def fetch(out, what="all", quiet: bool = False) -> dict[str, Path]:
    """Fetch the sources in ``what`` into ``out`` (idempotent). Returns ``{"source/file": path}`` for every
    file of those sources. Raises :class:`FetchError` when a tool is missing or a download fails, and
    :class:`zoo.errors.ChecksumError` when a download does not match its pinned sha256."""
    names = resolve_sources(what)
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = _Log(quiet)
    manifest = _load_manifest(out)
    for name in names:
        src = SOURCES[name]
        if _verified(out, src, manifest):
            log(f"{name}: {len(src.files)} files present and verified, skipping")
            continue
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"medzoo-fetch-{name}-") as tmp:
            if name == "pyradiomics":
                _fetch_pyradiomics(out, src, manifest, Path(tmp), log)
            else:
                _fetch_debian(out, src, manifest, Path(tmp), log)
        _save_manifest(out, manifest)
        log(f"{name}: {len(src.files)} files in {out / name} ({time.perf_counter() - t0:.1f} s)")
    _save_manifest(out, manifest)
    log(f"done; manifest: {out / 'manifest.json'}")
    return {f"{n}/{f}": out / n / f for n in names for f in SOURCES[n].files}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.data.fetch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="data folder (created if needed)")
    parser.add_argument("--what", default="all",
                        help="comma-separated sources or groups: pyradiomics, invesalius, mricron, ct, mr, all "
                             "(default all)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    try:
        fetch(args.out, args.what, quiet=args.quiet)
    except (FetchError, ChecksumError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
