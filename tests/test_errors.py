"""Structured fields of medzoo's errors: every class declares them, ``str()`` stays the message, they survive
pickling and copying (errors cross process boundaries under torchrun), and raise sites fill them in."""

from __future__ import annotations

import copy
import inspect
import pickle

import pytest

import zoo
from zoo import errors
from zoo.archs.limits import ArchitectureSpecError as LimitsArchitectureSpecError
from zoo.nnunet.plans import PlanError as PlansPlanError

#: the fields each class declares (the contract callers and tests rely on)
FIELDS = {
    errors.UnknownModelError: ("name", "suggestions"),
    errors.WeightsNotAvailableError: ("name", "url", "mirror_path", "reason"),
    errors.ChecksumError: ("path", "expected_sha256", "actual_sha256", "expected_size", "actual_size"),
    errors.UnsafeCheckpointError: ("path", "global_name"),
    errors.CheckpointFormatError: ("path", "key"),
    errors.AdaptationError: ("key",),
    errors.ArchitectureSpecError: ("key",),
    errors.PlanError: ("path", "key"),
}
BASES = {
    errors.UnknownModelError: KeyError,
    errors.WeightsNotAvailableError: FileNotFoundError,
    errors.AdaptationError: ValueError,
    errors.ArchitectureSpecError: ValueError,
    errors.PlanError: ValueError,
}


def _subclasses() -> list[type]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass)
            if issubclass(c, errors.ZooError) and c is not errors.ZooError and c.__module__ == errors.__name__]


def _make(cls: type, message: str = "the message; fix it", **fields):
    if cls is errors.ArchitectureSpecError:
        return cls(fields.pop("key", None), message, **fields)
    return cls(message, **fields)


def test_every_subclass_declares_its_fields_with_none_defaults():
    for cls in FIELDS:
        assert cls in _subclasses()
    for cls in _subclasses():
        if cls in FIELDS:
            assert cls.fields == FIELDS[cls], cls
        hints = inspect.get_annotations(cls)
        for name in cls.fields:
            assert name in hints or any(name in inspect.get_annotations(b) for b in cls.__mro__[1:]), (cls, name)
            assert getattr(cls, name) is None, (cls, name)
            assert f"``{name}``" in cls.__doc__, (cls, name)  # documented in the docstring


def test_bases_are_kept_and_old_import_paths_work():
    for cls, base in BASES.items():
        assert issubclass(cls, base) and issubclass(cls, errors.ZooError)
    assert LimitsArchitectureSpecError is errors.ArchitectureSpecError is zoo.ArchitectureSpecError
    assert PlansPlanError is errors.PlanError is zoo.PlanError
    assert {"ArchitectureSpecError", "PlanError"} <= set(zoo.__all__)


@pytest.mark.parametrize("cls", list(FIELDS), ids=lambda c: c.__name__)
def test_str_is_the_message_and_fields_are_attributes(cls):
    values = {name: f"value-{name}" for name in cls.fields}
    err = _make(cls, **values)
    assert str(err) == "the message; fix it"  # KeyError subclasses too: no quotes added
    assert all(getattr(err, name) == value for name, value in values.items())
    bare = _make(cls)
    assert str(bare) == "the message; fix it" and all(getattr(bare, n) is None for n in cls.fields)
    assert cls.__name__ in repr(err) and "value-" in repr(err)


def test_unknown_field_is_a_type_error_and_paths_become_str(tmp_path):
    with pytest.raises(TypeError, match="no field 'sha'"):
        errors.ChecksumError("x", sha="0")
    assert errors.ChecksumError("x", path=tmp_path / "f").path == str(tmp_path / "f")


@pytest.mark.parametrize("cls", list(FIELDS), ids=lambda c: c.__name__)
@pytest.mark.parametrize("how", ["pickle", "copy", "deepcopy"])
def test_pickle_and_copy_round_trip(cls, how):
    err = _make(cls, **{name: [1, name] if name == "suggestions" else f"v-{name}" for name in cls.fields})
    back = {"pickle": lambda e: pickle.loads(pickle.dumps(e)), "copy": copy.copy, "deepcopy": copy.deepcopy}[how](err)
    assert type(back) is cls and str(back) == str(err) and back.args == err.args
    assert all(getattr(back, n) == getattr(err, n) for n in cls.fields)


# -- representative raise sites


def test_verify_file_sets_path_sha256_and_size(tmp_path):
    from zoo.hub.integrity import verify_file

    file = tmp_path / "w.bin"
    file.write_bytes(b"abc")
    with pytest.raises(errors.ChecksumError) as err:
        verify_file(file, sha256="0" * 64)
    assert (err.value.path, err.value.expected_sha256, err.value.actual_size) == (str(file), "0" * 64, 3)
    assert err.value.actual_sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with pytest.raises(errors.ChecksumError) as err:
        verify_file(file, sha256=None, size=4)
    assert (err.value.expected_size, err.value.actual_size, err.value.actual_sha256) == (4, 3, None)


def test_unknown_model_sets_name_and_suggestions():
    with pytest.raises(errors.UnknownModelError) as err:
        zoo.info("med3d-resnet15")
    assert err.value.name == "med3d-resnet15" and "med3d-resnet152" in err.value.suggestions
    assert str(err.value) == err.value.args[0]


def test_unsafe_checkpoint_names_path_and_global(tmp_path):
    from zoo.convert.safe_load import check_torch_file

    file = tmp_path / "evil.pt"
    file.write_bytes(b"\x80\x02cos\nsystem\nq\x00.")
    with pytest.raises(errors.UnsafeCheckpointError) as err:
        check_torch_file(file)
    assert (err.value.path, err.value.global_name) == (str(file), "os.system")


def test_checkpoint_format_sets_path(tmp_path):
    from zoo.convert.safe_load import check_torch_file

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(errors.CheckpointFormatError) as err:
        check_torch_file(empty)
    assert err.value.path == str(empty) and err.value.key is None


def test_plan_error_sets_key_and_path(tmp_path):
    from zoo.nnunet.plans import load_plans

    with pytest.raises(errors.PlanError) as err:
        load_plans({"configurations": {}})
    assert err.value.key == "configurations"
    missing = tmp_path / "nnUNetPlans.json"
    with pytest.raises(errors.PlanError) as err:
        load_plans(missing)
    assert err.value.path == str(missing)


def test_architecture_spec_error_keeps_its_signature():
    err = errors.ArchitectureSpecError("arch_kwargs.n_stages", "arch_kwargs.n_stages is too large")
    assert (err.key, str(err)) == ("arch_kwargs.n_stages", "arch_kwargs.n_stages is too large")
    assert pickle.loads(pickle.dumps(err)).key == "arch_kwargs.n_stages"
