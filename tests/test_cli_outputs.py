"""What ``zoo`` writes and how it fails: no output may be an input, an existing output is replaced only with
``--force``, a file is never where a folder is expected (or the reverse), errors are one line (the traceback only
with ``--debug``), and written files get the user's umask. In-process through ``zoo.cli.main`` and as the real
console script."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.cli import main
from zoo.demo import DEMO_DATASET, DEMO_PLANS, demo_inputs
from zoo.hub.integrity import atomic_path, default_file_mode, sha256_file

pytestmark = pytest.mark.filterwarnings("ignore::zoo.LicenseWarning")

DEMO = "genesis-ct-demo"
DEMO_WEIGHTS = Path(demo_inputs()[1]) / "model.safetensors"


# ----------------------------------------------------------------------------------------------- helpers
def run_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    """``zoo ARGV`` through ``zoo.cli.main``: (exit status, stdout, stderr)."""
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def zoo_command() -> list[str]:
    """The installed ``zoo`` console script (``zoo = zoo.cli:main``), else the same entry point through Python."""
    beside = Path(sys.executable).with_name("zoo")
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-c", "import sys; from zoo.cli import main; sys.exit(main())"]


def run_subprocess(argv: list[str], umask: int = 0o022) -> subprocess.CompletedProcess:
    """``zoo ARGV`` as a separate process with ``umask`` (the caches come from the isolated test environment)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*zoo_command(), *argv], capture_output=True, text=True, env=env, umask=umask,
                          timeout=120)


def assert_one_line_error(err: str, *fragments: str) -> None:
    """``err`` is exactly one line ``zoo: error: ...`` containing every fragment, without a traceback."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("zoo: error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)


@pytest.fixture
def plans(tmp_path) -> tuple[Path, Path]:
    """Copies of the demo's 4-channel MRI plans and dataset.json (the shipped ones are never put at risk)."""
    p, d = tmp_path / "nnUNetPlans.json", tmp_path / "dataset.json"
    shutil.copyfile(DEMO_PLANS, p)
    shutil.copyfile(DEMO_DATASET, d)
    return p, d


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "a_file"
    path.write_text("not a folder\n")
    return path


def export_args(plans: tuple[Path, Path], output: Path) -> list[str]:
    return ["export-nnunet", DEMO, "--plans", str(plans[0]), "--dataset-json", str(plans[1]), "-o", str(output)]


# ----------------------------------------------------------------------------------------------- wrong kind
@pytest.mark.parametrize("command", ["convert", "export-nnunet", "plan", "card", "demo"])
def test_output_below_a_regular_file_is_refused(command, a_file, plans, tmp_path, capsys):
    target = a_file / "sub" / "out.bin"
    argv = {
        "convert": ["convert", str(DEMO_WEIGHTS), "-o", str(target)],
        "export-nnunet": export_args(plans, target),
        "plan": ["plan", DEMO, "--plans", str(plans[0]), "-o", str(target)],
        "card": ["card", DEMO, "-o", str(target)],
        "demo": ["demo", "-o", str(target)],
    }[command]
    code, _, err = run_in_process(argv, capsys)
    assert code == 2
    assert_one_line_error(err, str(target), f"its parent {a_file} is a file")
    assert a_file.read_text() == "not a folder\n"


@pytest.mark.parametrize("command", ["convert", "export-nnunet", "plan", "card"])
def test_file_output_that_is_a_folder_is_refused(command, plans, tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    argv = {
        "convert": ["convert", str(DEMO_WEIGHTS), "-o", str(folder), "--force"],
        "export-nnunet": [*export_args(plans, folder), "--force"],
        "plan": ["plan", DEMO, "--plans", str(plans[0]), "-o", str(folder), "--force"],
        "card": ["card", DEMO, "-o", str(folder), "--force"],
    }[command]
    code, _, err = run_in_process(argv, capsys)
    assert code == 2
    assert_one_line_error(err, str(folder), "Is a directory", "takes a file path")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("argv", [
    ["download", DEMO, "--cache-dir", "{file}"],
    ["export-nnunet", DEMO, "--plans", "{plans}", "--dataset-json", "{dataset}", "-o", "{out}",
     "--cache-dir", "{file}"],
    ["adapt", DEMO, "--plans", "{plans}", "--cache-dir", "{file}"],
    ["mirror", "export", "med3d-resnet10", "{out}", "--cache-dir", "{file}"],
])
def test_cache_dir_that_is_a_file_is_refused(argv, a_file, plans, tmp_path, capsys):
    values = {"file": a_file, "plans": plans[0], "dataset": plans[1], "out": tmp_path / "out"}
    code, _, err = run_in_process([a.format(**values) for a in argv], capsys)
    assert code == 2
    assert_one_line_error(err, str(a_file), "--cache-dir takes a folder")
    assert a_file.read_text() == "not a folder\n" and not (tmp_path / "out").exists()


def test_cache_from_the_environment_that_is_a_file_is_refused(a_file, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_CACHE", str(a_file))
    code, _, err = run_in_process(["download", DEMO], capsys)
    assert code == 2
    assert_one_line_error(err, str(a_file), "$ZOO_CACHE")


def test_demo_output_must_be_a_folder_and_a_non_empty_one_needs_force(a_file, tmp_path, capsys):
    code, _, err = run_in_process(["demo", "-o", str(a_file)], capsys)
    assert code == 2
    assert_one_line_error(err, str(a_file), "-o takes a folder")
    assert a_file.read_text() == "not a folder\n"
    code, _, err = run_in_process(["demo", "-o", str(a_file), "--force"], capsys)  # --force never replaces a file
    assert code == 2 and "takes a folder" in err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    code, _, err = run_in_process(["demo", "-o", str(busy)], capsys)
    assert code == 2
    assert_one_line_error(err, str(busy), "not empty", "--force")
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    code, _, err = run_in_process(["demo", "-o", str(demo_inputs()[0]), "--force"], capsys)
    assert code == 2 and "is the input" in err


def test_demo_output_that_is_a_file_in_a_subprocess(a_file):
    out = run_subprocess(["demo", "-o", str(a_file)])
    assert out.returncode == 2
    assert_one_line_error(out.stderr, str(a_file), "takes a folder")
    assert a_file.read_text() == "not a folder\n"


# ----------------------------------------------------------------------------------------------- inputs
def test_convert_refuses_to_write_onto_its_input_by_name_symlink_or_hard_link(tmp_path, capsys):
    checkpoint = tmp_path / "model.safetensors"
    shutil.copyfile(DEMO_WEIGHTS, checkpoint)
    before = sha256_file(checkpoint)
    symlink, hard_link = tmp_path / "symlink.safetensors", tmp_path / "hardlink.safetensors"
    symlink.symlink_to(checkpoint)
    os.link(checkpoint, hard_link)
    for output in (checkpoint, tmp_path / "." / "model.safetensors", symlink, hard_link):
        code, _, err = run_in_process(["convert", str(checkpoint), "-o", str(output), "--force"], capsys)
        assert code == 2
        assert_one_line_error(err, "refusing to write", "is the input", str(checkpoint))
    assert sha256_file(checkpoint) == before
    assert symlink.is_symlink() and os.stat(hard_link).st_ino == os.stat(checkpoint).st_ino


def test_converted_file_gets_the_umask_of_the_user(tmp_path, capsys):
    # safetensors creates its file 0600 whatever the umask; the output must get the user's mode
    checkpoint = tmp_path / "model.safetensors"
    shutil.copyfile(DEMO_WEIGHTS, checkpoint)
    output = tmp_path / "converted.safetensors"
    code, _, err = run_in_process(["convert", str(checkpoint), "-o", str(output)], capsys)
    assert code == 0, err
    assert output.stat().st_mode & 0o777 == default_file_mode()


def test_convert_onto_its_input_in_a_subprocess_then_debug_shows_the_traceback(tmp_path):
    checkpoint = tmp_path / "model.safetensors"
    shutil.copyfile(DEMO_WEIGHTS, checkpoint)
    before = sha256_file(checkpoint)
    out = run_subprocess(["convert", str(checkpoint), "-o", str(checkpoint)])
    assert out.returncode == 2
    assert_one_line_error(out.stderr, "is the input")
    out = run_subprocess(["convert", str(checkpoint), "-o", str(checkpoint), "--debug"])
    assert out.returncode == 2
    assert "Traceback" in out.stderr and out.stderr.splitlines()[-1].startswith("zoo: error: refusing to write")
    assert sha256_file(checkpoint) == before


def test_export_nnunet_and_plan_refuse_to_overwrite_the_plans_they_read(plans, tmp_path, capsys):
    p, d = plans
    before = {path: sha256_file(path) for path in plans}
    for argv in (export_args(plans, p), export_args(plans, d),
                 [*export_args(plans, tmp_path / "w.pth"), "--report", str(p)],
                 ["plan", DEMO, "--plans", str(p), "-o", str(p), "--force"],
                 ["adapt", DEMO, "--plans", str(p), "--report", str(p), "--force"]):
        code, _, err = run_in_process(argv, capsys)
        assert code == 2
        assert_one_line_error(err, "is the input")
    code, _, err = run_in_process([*export_args(plans, tmp_path / "x.pth"), "--report", str(tmp_path / "x.pth")],
                                  capsys)
    assert code == 2
    assert_one_line_error(err, "-o and --report both name")
    assert {path: sha256_file(path) for path in plans} == before
    assert not (tmp_path / "w.pth").exists() and not (tmp_path / "x.pth").exists()


def test_model_folder_files_are_inputs_too(tmp_path, plans, capsys):
    folder = tmp_path / "model"
    shutil.copytree(DEMO_WEIGHTS.parent, folder)
    before = sha256_file(folder / "model.safetensors")
    code, _, err = run_in_process(["export-nnunet", str(folder), "--plans", str(plans[0]), "--dataset-json",
                                   str(plans[1]), "-o", str(folder / "model.safetensors"), "--force"], capsys)
    assert code == 2 and "is the input" in err
    assert sha256_file(folder / "model.safetensors") == before


def test_mirror_is_never_the_cache_it_reads_or_fills(tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    code, _, err = run_in_process(["mirror", "export", "med3d-resnet10", str(cache), "--cache-dir", str(cache)], capsys)
    assert code == 2
    assert_one_line_error(err, "DIR and --cache-dir both name")
    code, _, err = run_in_process(["mirror", "import", str(cache), "--cache-dir", str(cache)], capsys)
    assert code == 2
    assert_one_line_error(err, "is the input")


# ----------------------------------------------------------------------------------------------- --force
def test_existing_output_is_replaced_only_with_force(tmp_path, plans, capsys):
    card = tmp_path / "card.md"
    card.write_text("old")
    code, _, err = run_in_process(["card", DEMO, "-o", str(card)], capsys)
    assert code == 2
    assert_one_line_error(err, str(card), "already exists", "--force")
    assert card.read_text() == "old"
    code, out, _ = run_in_process(["card", DEMO, "-o", str(card), "--force"], capsys)
    assert code == 0 and "wrote" in out and card.read_text().startswith("---")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"old")
    code, _, err = run_in_process(export_args(plans, weights), capsys)
    assert code == 2 and "already exists" in err and weights.read_bytes() == b"old"


def test_cards_write_replaces_generated_cards_but_not_a_hand_written_file_without_force(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# my project\n")
    code, _, err = run_in_process(["cards", "--write", "--dir", str(tmp_path)], capsys)
    assert code == 2
    assert_one_line_error(err, str(readme), "did not generate it", "--force")
    assert readme.read_text() == "# my project\n" and sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]


def test_export_replaced_with_force_gets_the_umask_of_the_user(tmp_path, plans):
    weights = tmp_path / "pretrained.pth"
    weights.write_bytes(b"old")
    out = run_subprocess([*export_args(plans, weights), "--force"], umask=0o022)
    assert out.returncode == 0, out.stderr
    assert weights.stat().st_size > 1000 and (weights.stat().st_mode & 0o777) == 0o644
    private = tmp_path / "private.pth"
    out = run_subprocess(export_args(plans, private), umask=0o077)
    assert out.returncode == 0, out.stderr
    assert (private.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_atomic_path_mode_defaults_to_the_umask_and_obeys_an_explicit_mode(tmp_path):
    current = os.umask(0o022)
    os.umask(current)
    assert default_file_mode() == 0o666 & ~current          # read once per process; this process never changes it
    with atomic_path(tmp_path / "default") as tmp:
        tmp.write_text("x")
    with atomic_path(tmp_path / "explicit", mode=0o640) as tmp:
        tmp.write_text("x")
    assert (tmp_path / "default").stat().st_mode & 0o777 == 0o666 & ~current
    assert (tmp_path / "explicit").stat().st_mode & 0o777 == 0o640


# ----------------------------------------------------------------------------------------------- error lines
@pytest.mark.parametrize("error, status, fragments", [
    (ValueError("bad value"), 1, ["ValueError: bad value", "--debug"]),
    (KeyError("missing"), 1, ["KeyError: 'missing'"]),
    (RuntimeError("line one\nline two"), 1, ["RuntimeError: line one line two"]),
    (PermissionError(errno.EACCES, "Permission denied", "/root/secret"), 1,
     ["cannot read /root/secret: Permission denied"]),
])
def test_any_exception_is_one_line_and_debug_adds_the_traceback(error, status, fragments, monkeypatch, capsys):
    from zoo import registry

    def fail(name):
        raise error

    monkeypatch.setattr(registry, "get_entry", fail)
    code, _, err = run_in_process(["info", DEMO], capsys)
    assert code == status
    assert_one_line_error(err, *fragments)
    for argv in (["--debug", "info", DEMO], ["info", DEMO, "--debug"]):
        code, _, err = run_in_process(argv, capsys)
        assert code == status and "Traceback" in err and err.splitlines()[-1].startswith("zoo: error: ")


def test_os_error_names_the_path_and_its_cause(tmp_path, a_file, monkeypatch, capsys):
    import zoo.convert.standalone as standalone

    target = a_file / "y"

    def fail(file, output, **kwargs):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(target))

    monkeypatch.setattr(standalone, "convert_file", fail)
    code, _, err = run_in_process(["convert", str(DEMO_WEIGHTS), "-o", str(tmp_path / "out.safetensors")], capsys)
    assert code == 1
    assert err == f"zoo: error: cannot read {target}: Not a directory (its parent {a_file} is a file)\n"
    code, _, err = run_in_process(["convert", str(DEMO_WEIGHTS), "-o", str(target.parent / "z"), "--force"], capsys)
    assert code == 2 and "its parent" in err                 # the same path as an output: refused up front


def test_os_error_on_an_output_reads_as_a_write(tmp_path, a_file):
    from zoo.cli.outputs import describe_os_error

    err = NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(a_file / "y"))
    assert describe_os_error(err, [a_file / "y"]) == (f"cannot write {a_file / 'y'}: Not a directory "
                                                      f"(its parent {a_file} is a file)")


def test_usage_errors_and_interrupts(monkeypatch, capsys):
    code, _, err = run_in_process(["convert"], capsys)
    assert code == 2
    assert_one_line_error(err, "required", "zoo convert --help")
    code, _, err = run_in_process(["no-such-command"], capsys)
    assert code == 2 and len(err.splitlines()) == 1

    from zoo import registry

    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "get_entry", interrupted)
    code, out, err = run_in_process(["info", DEMO], capsys)
    assert code == 130 and out == "" and err == ""
