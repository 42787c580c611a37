"""medzoo's download path through the real huggingface_hub client against a local Hub (tests/hub_server.py):
first download and its verification, cache hits without requests, resume after a cut connection, wrong bytes,
revision pinning, Hub errors and fast failure without a connection.

The client is pointed at the local server for the duration of each test only (huggingface_hub reads
``HF_ENDPOINT`` / ``HF_HUB_OFFLINE`` into its ``constants`` module at import, so those attributes are patched), and
any connection to a host other than 127.0.0.1 is refused, so no test can reach the internet.
"""

from __future__ import annotations

import dataclasses
import random
import time
import traceback
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch

import zoo
import zoo.registry as registry
from zoo.entries.genesis import LUNG_PLAN_ARCH_KWARGS
from zoo.errors import ChecksumError, WeightsNotAvailableError
from zoo.hub.download import FetchedFile, fetch_checkpoint
from zoo.hub.paths import hf_cache_dir
from zoo.registry import CheckpointSource

from hub_server import HubServer, closed_port, git_blob_id, sha256_hex, use_local_hub
from upstream import nnunet_v1_lung_state_dict

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")

REPO, FILENAME = "medzoo-test/TinyHub", "weights.model"
SIZE = 300_000
FAST = 5.0  # seconds: the bound on every failure that must not retry


def _content(seed: int, size: int = SIZE) -> bytes:
    """Deterministic pseudo-random file content."""
    return random.Random(seed).randbytes(size)


@pytest.fixture
def refused(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An endpoint on 127.0.0.1 that refuses connections, with the client pointed at it."""
    sock = closed_port()
    endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    use_local_hub(monkeypatch, endpoint)
    try:
        yield endpoint
    finally:
        sock.close()


def _source(revision: str | None = None, data: bytes | None = None, filename: str = FILENAME) -> CheckpointSource:
    """A registry-style source of ``REPO``; pinned to ``data``'s sha256 and size when given."""
    pins = {"sha256": sha256_hex(data), "size": len(data)} if data is not None else {}
    return CheckpointSource(repo_id=REPO, filename=filename, format="nnunet-v1", revision=revision, **pins)


def _fetch(source: CheckpointSource) -> FetchedFile:
    """medzoo's download path for ``source``, no mirror, no progress bars."""
    return fetch_checkpoint(source, name="tiny", progress=False)


def _timed(call: Callable[[], object]) -> tuple[object, float]:
    """Run ``call``; return what it returned, or the exception it raised, and the seconds it took."""
    start = time.monotonic()
    try:
        outcome = call()
    except Exception as err:  # noqa: BLE001 (the caller asserts on the type)
        outcome = err
    return outcome, time.monotonic() - start


def _calls(server: HubServer) -> list[tuple[str, str, str, str | None]]:
    """The requests received, as (origin, method, path, Range) tuples."""
    return [(r.origin, r.method, r.path, r.range) for r in server.requests]


def _repo_cache() -> Path:
    """``REPO``'s folder in this test's HF cache (resolved, as huggingface_hub resolves its cache dir)."""
    return hf_cache_dir().resolve() / f"models--{REPO.replace('/', '--')}"


def _cached_files() -> list[str]:
    """Blobs, snapshot links and partial downloads in the HF cache of ``REPO`` (not refs, locks or markers)."""
    root = _repo_cache()
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.parts[len(root.parts)] in ("blobs", "snapshots"))


# -- download, verification, cache -------------------------------------------------------------------------------

def test_first_download_is_verified_against_the_hub_lfs_hash(hub):
    data = _content(1)
    commit = hub.commit(REPO, {FILENAME: data})
    fetched = _fetch(_source())
    assert fetched.path.read_bytes() == data
    assert (fetched.origin, fetched.verified_by) == ("hub", "Hub LFS sha256 (blob name)")
    assert fetched.sha256 == sha256_hex(data)
    assert fetched.path == _repo_cache() / "snapshots" / commit / FILENAME
    assert fetched.path.resolve() == _repo_cache() / "blobs" / sha256_hex(data)
    assert (_repo_cache() / "refs" / "main").read_text() == commit
    resolve = f"/{REPO}/resolve/main/{FILENAME}"
    # medzoo's probe, the client's metadata request, then the blob from the CDN the Hub redirected to
    assert _calls(hub) == [("hub", "HEAD", resolve, None), ("hub", "HEAD", resolve, None),
                           ("cdn", "GET", f"/blobs/{sha256_hex(data)}", None)]


def test_first_download_is_verified_against_the_registry_sha256(hub):
    data = _content(2)
    commit = hub.commit(REPO, {FILENAME: data})
    fetched = _fetch(_source(commit, data))
    assert fetched.path.read_bytes() == data
    assert fetched.verified_by == "registry sha256"
    assert [r.path for r in hub.requests if r.origin == "hub"] == [f"/{REPO}/resolve/{commit}/{FILENAME}"] * 2


def test_pinned_file_is_served_from_the_cache_without_any_request(hub):
    data = _content(3)
    commit = hub.commit(REPO, {FILENAME: data})
    first = _fetch(_source(commit, data))
    hub.reset_requests()
    second = _fetch(_source(commit, data))
    assert second.path == first.path and second.path.read_bytes() == data
    assert hub.requests == []


def test_unpinned_file_is_checked_against_main_once_and_not_downloaded_again(hub):
    data = _content(4)
    hub.commit(REPO, {FILENAME: data})
    first = _fetch(_source())
    hub.reset_requests()
    second = _fetch(_source())
    assert second.path == first.path
    assert _calls(hub) == [("hub", "HEAD", f"/{REPO}/resolve/main/{FILENAME}", None)]


def test_regular_git_file_is_served_by_the_hub_itself(hub):
    data = b'{"note": "a small non-LFS file"}\n'
    hub.commit(REPO, {"config.json": data}, lfs=False)
    fetched = _fetch(_source(data=data, filename="config.json"))
    assert fetched.path.read_bytes() == data and fetched.verified_by == "registry sha256"
    assert fetched.path.resolve().name == git_blob_id(data)  # the client names a git file's blob by its ETag
    assert [(r.origin, r.method) for r in hub.requests] == [("hub", "HEAD"), ("hub", "HEAD"), ("hub", "GET")]


def test_download_resumes_with_a_range_request_after_a_cut_connection(hub):
    from huggingface_hub import constants

    # the client writes what it received in chunks of DOWNLOAD_CHUNK_SIZE (10 MiB): it resumes after the last
    # whole chunk, so the cut comes after one chunk and a bit
    chunk = constants.DOWNLOAD_CHUNK_SIZE
    data = _content(5, size=chunk + 2_000_000)
    commit = hub.commit(REPO, {FILENAME: data})
    hub.inject(origin="cdn", method="GET", cut_after=chunk + 12_345)
    fetched = _fetch(_source(data=data))
    assert fetched.path.read_bytes() == data and fetched.sha256 == sha256_hex(data)
    gets = [r for r in hub.requests if r.method == "GET"]
    assert [(r.origin, r.range) for r in gets] == [("cdn", None), ("cdn", f"bytes={chunk}-")]
    assert _cached_files() == sorted([f"blobs/{sha256_hex(data)}", f"snapshots/{commit}/{FILENAME}"])


@pytest.mark.parametrize("pinned", [True, False], ids=["registry-sha256", "hub-lfs-hash"])
def test_wrong_bytes_are_refused_twice_and_leave_nothing_in_the_cache(hub, pinned):
    data = _content(6)
    commit = hub.commit(REPO, {FILENAME: data})
    hub.inject(origin="cdn", method="GET", corrupt=True, times=None)
    source = _source(commit, data) if pinned else _source()
    with pytest.raises(ChecksumError) as err:
        _fetch(source)
    assert err.value.expected_sha256 == sha256_hex(data) != err.value.actual_sha256
    assert len(err.value.actual_sha256) == 64
    assert [r.origin for r in hub.requests if r.method == "GET"] == ["cdn", "cdn"]  # one download again, no more
    assert _cached_files() == []


def test_bytes_corrupted_once_are_downloaded_again_and_accepted(hub):
    data = _content(7)
    commit = hub.commit(REPO, {FILENAME: data})
    hub.inject(origin="cdn", method="GET", corrupt=True, times=1)
    fetched = _fetch(_source(commit, data))
    assert fetched.path.read_bytes() == data
    assert [r.origin for r in hub.requests if r.method == "GET"] == ["cdn", "cdn"]
    assert _cached_files() == sorted([f"blobs/{sha256_hex(data)}", f"snapshots/{commit}/{FILENAME}"])


# -- revisions ---------------------------------------------------------------------------------------------------

def test_pinned_commit_is_served_after_main_moves(hub):
    old, new = _content(8), _content(9)
    first = hub.commit(REPO, {FILENAME: old})
    second = hub.commit(REPO, {FILENAME: new})  # main moves on
    pinned = _fetch(_source(first, old))
    assert pinned.path.read_bytes() == old
    assert pinned.path == _repo_cache() / "snapshots" / first / FILENAME
    assert [r.path for r in hub.requests if r.origin == "hub"] == [f"/{REPO}/resolve/{first}/{FILENAME}"] * 2
    latest = _fetch(_source())
    assert latest.path.read_bytes() == new
    assert latest.path == _repo_cache() / "snapshots" / second / FILENAME
    assert pinned.path.read_bytes() == old  # the pinned snapshot is untouched


def test_unknown_revision_is_a_clear_error(hub):
    hub.commit(REPO, {FILENAME: _content(10)})
    missing = "f" * 40
    with pytest.raises(WeightsNotAvailableError) as err:
        _fetch(_source(missing))
    msg = str(err.value)
    assert f"the Hub has no revision {missing} of {REPO} (HTTP 404)" in msg
    assert hub.file_url(REPO, FILENAME, missing) in msg
    assert len(hub.requests) == 1 and _cached_files() == []


# -- Hub errors and connection failures --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda hub: None, f"the Hub has no repository {REPO} or it needs a login (HTTP 404)"),
        (lambda hub: hub.commit(REPO, {"other.bin": b"x"}),
         f"the Hub has no file {FILENAME} at that revision (HTTP 404)"),
        (lambda hub: hub.inject(origin="hub", status=401, error_code="RepoNotFound"),
         f"the Hub has no repository {REPO} or it needs a login (HTTP 401)"),
        (lambda hub: hub.inject(origin="hub", status=401, error_code="GatedRepo"),
         f"{REPO} is a gated repository (HTTP 401)"),
    ],
    ids=["repo-404", "file-404", "repo-401", "gated-401"],
)
def test_missing_or_closed_file_names_the_url(hub, setup, reason):
    setup(hub)
    err, seconds = _timed(lambda: _fetch(_source()))
    assert isinstance(err, WeightsNotAvailableError), err
    msg = str(err)
    assert reason in msg
    assert hub.file_url(REPO, FILENAME) in msg
    assert f"$ZOO_MIRROR/{REPO}/{FILENAME}" in msg
    assert err.__cause__ is None and err.__suppress_context__  # only medzoo's message is printed
    assert len(hub.requests) == 1 and seconds < FAST


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limit_and_server_errors_fail_at_once(hub, status):
    hub.commit(REPO, {FILENAME: _content(11)})
    hub.inject(origin="hub", status=status, times=None)
    err, seconds = _timed(lambda: _fetch(_source()))
    assert isinstance(err, WeightsNotAvailableError), err
    assert f"(HTTP {status}" in str(err) and "try again later" in str(err)
    assert "HF_HUB_OFFLINE=1" in str(err)
    assert len(hub.requests) == 1, _calls(hub)  # no retry
    assert seconds < FAST


def test_server_error_during_the_download_fails_at_once_and_leaves_no_partial_file(hub):
    hub.commit(REPO, {FILENAME: _content(12)})
    hub.inject(origin="cdn", method="GET", status=500, times=None)
    err, seconds = _timed(lambda: _fetch(_source()))
    assert isinstance(err, WeightsNotAvailableError), err
    assert "the Hub answered with a server error (HTTP 500)" in str(err)
    assert [r.origin for r in hub.requests if r.method == "GET"] == ["cdn"]
    assert _cached_files() == [] and seconds < FAST


def test_hub_down_serves_the_cached_file(hub):
    data = _content(13)
    hub.commit(REPO, {FILENAME: data})
    first = _fetch(_source())
    hub.reset_requests()
    hub.inject(origin="hub", status=503, times=None)
    second, seconds = _timed(lambda: _fetch(_source()))
    assert isinstance(second, FetchedFile), second
    assert second.path == first.path and second.path.read_bytes() == data
    assert len(hub.requests) == 1 and seconds < FAST


def test_connection_refused_fails_fast_and_says_how_to_skip_the_network(refused):
    err, seconds = _timed(lambda: _fetch(_source()))
    assert isinstance(err, WeightsNotAvailableError), err
    msg = str(err)
    assert seconds < FAST
    assert f"cannot connect to {refused}" in msg and "Connection refused" in msg
    assert "Set HF_HUB_OFFLINE=1" in msg
    assert f"{refused}/{REPO}/resolve/main/{FILENAME}" in msg
    assert f"$ZOO_MIRROR/{REPO}/{FILENAME}" in msg
    printed = "".join(traceback.format_exception(err))  # what an uncaught error prints
    assert "During handling" not in printed and "direct cause" not in printed
    assert "huggingface_hub" not in printed and "httpx" not in printed


def test_hf_hub_offline_set_at_run_time_sends_no_request(hub, monkeypatch):
    hub.commit(REPO, {FILENAME: _content(14)})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotAvailableError) as err:
        _fetch(_source())
    assert err.value.reason == "HF_HUB_OFFLINE is set" and err.value.url.startswith("http")
    assert hub.requests == []


def test_force_download_while_offline_is_a_clear_error(hub, monkeypatch):
    data = _content(15)
    commit = hub.commit(REPO, {FILENAME: data})
    _fetch(_source(commit, data))
    hub.reset_requests()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotAvailableError) as err:
        fetch_checkpoint(_source(commit, data), name="tiny", force_download=True, progress=False)
    assert err.value.reason == "force_download=True needs the Hub, but HF_HUB_OFFLINE is set"
    assert err.value.name == "tiny" and err.value.url.endswith(FILENAME)
    assert hub.requests == []


# -- zoo.load end to end -----------------------------------------------------------------------------------------

NAME = "tiny-hub-nnunet"
FEATURES = (4, 8, 16)


def _tiny_entry(source: CheckpointSource) -> registry.ModelEntry:
    """A 3-stage version of the Genesis nnU-Net entry, whose file lives on the local Hub."""
    base = registry.get_entry("genesis-chest-ct-nnunet-lung")
    kwargs = dict(LUNG_PLAN_ARCH_KWARGS)
    kwargs.update(
        n_stages=3, features_per_stage=list(FEATURES), kernel_sizes=[[3, 3, 3]] * 3,
        strides=[[1, 1, 1], [2, 2, 2], [1, 2, 2]], n_conv_per_stage=[2] * 3, n_conv_per_stage_decoder=[2] * 2,
    )
    return dataclasses.replace(base, name=NAME, arch_kwargs=kwargs, source=source)


def test_zoo_load_downloads_converts_and_then_needs_no_request(hub, monkeypatch, tmp_path):
    sd = nnunet_v1_lung_state_dict(seed=3, features=FEATURES)
    file = tmp_path / FILENAME
    torch.save({"epoch": 3, "state_dict": sd, "optimizer_state_dict": {}}, file)
    data = file.read_bytes()
    commit = hub.commit(REPO, {FILENAME: data})
    monkeypatch.setitem(registry._REGISTRY, NAME, _tiny_entry(_source(commit, data)))

    model = zoo.load(NAME, progress=False)
    assert model.load_report.verified_by == "registry sha256"
    assert [(r.origin, r.method) for r in hub.requests] == [("hub", "HEAD"), ("hub", "HEAD"), ("cdn", "GET")]
    loaded = model.state_dict()
    reference = zoo.load(NAME, checkpoint=file, progress=False).state_dict()  # the same file, converted locally
    assert loaded.keys() == reference.keys() and len(loaded) > 0
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)

    hub.reset_requests()
    again = zoo.load(NAME, progress=False)
    assert again.load_report.verified_by.startswith("cached conversion")
    assert all(torch.equal(again.state_dict()[k], v) for k, v in loaded.items())
    assert hub.requests == []
