"""Test configuration: never touch the network, never touch the user's caches."""

import os

# Must be set before huggingface_hub is imported anywhere (it reads them once, at import).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.pop("ZOO_MIRROR", None)
os.environ.pop("HF_ENDPOINT", None)  # messages name huggingface.co URLs; the local Hub server sets its own

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, len(os.sched_getaffinity(0)))))  # the CPUs this process may use


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Every test gets empty medzoo and Hugging Face caches of its own."""
    root = tmp_path_factory.mktemp("caches")
    monkeypatch.setenv("ZOO_CACHE", str(root / "zoo"))
    monkeypatch.setenv("HF_HUB_CACHE", str(root / "hf"))
    monkeypatch.delenv("ZOO_MIRROR", raising=False)
    yield


@pytest.fixture(autouse=True)
def _seeded_global_rng():
    """Every test starts from the same global torch and numpy random state, so a test's random inputs do not
    depend on which tests ran before it (tests that need other draws seed their own generators)."""
    import numpy as np

    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def hub(monkeypatch):
    """A running local Hub (``tests/hub_server.py`` on 127.0.0.1, a port the OS picks) that the huggingface_hub
    client talks to during this test; every other host is refused meanwhile."""
    import huggingface_hub

    from hub_server import HubServer, use_local_hub

    server = HubServer().start()
    use_local_hub(monkeypatch, server.endpoint)
    try:
        yield server
    finally:
        huggingface_hub.close_session()  # drop keep-alive connections to this server
        server.stop()
