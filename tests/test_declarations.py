"""The single declarations the rest derives from: checkpoint formats (one converter each), architectures (builder,
weight-layout family, task, nnU-Net class) and registry entries (data, collected by ``zoo.entries``)."""

from __future__ import annotations

import importlib
import typing

import pytest

import zoo.entry
import zoo.registry as registry
from zoo.archs import ARCHITECTURES, get_builder
from zoo.archs.declarations import BY_NAME, DECLARATIONS, NNUNET_CLASSES, Task, WeightFamily, names_where
from zoo.archs.size_estimate import ARGUMENTS
from zoo.convert import formats
from zoo.entries import ENTRIES, FAMILY_NAMES


# --------------------------------------------------------------------------------------------------------------
# checkpoint formats
# --------------------------------------------------------------------------------------------------------------


def test_the_converter_table_has_exactly_the_declared_format_names():
    assert tuple(formats.CONVERTERS) == zoo.entry.CHECKPOINT_FORMATS == typing.get_args(zoo.entry.CheckpointFormat)
    assert registry.FORMATS == zoo.entry.CHECKPOINT_FORMATS


def test_the_converter_docs_table_matches_the_converters():
    rows = {}
    for line in formats.__doc__.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ``") and len(cells) == 4:
            rows[cells[0].strip("`")] = tuple(cells[1:])
    expected = {name: (c.wrapper_key, c.prefix_stripped, c.key_mapping) for name, c in formats.CONVERTERS.items()}
    assert rows == expected


def test_a_source_with_an_undeclared_format_is_refused():
    with pytest.raises(ValueError, match="unknown checkpoint format 'onnx'"):
        zoo.entry.CheckpointSource(repo_id="a/b", filename="m.onnx", format="onnx")


def test_unwrap_checkpoint_refuses_an_unknown_format(tmp_path):
    import torch

    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.raises(zoo.CheckpointFormatError, match="no converter for checkpoint format 'onnx'"):
        formats.unwrap_checkpoint(path, "onnx")


# --------------------------------------------------------------------------------------------------------------
# registry entries
# --------------------------------------------------------------------------------------------------------------


def test_the_registry_is_built_from_the_declared_entries():
    registry.list_models()
    assert len({e.name for e in ENTRIES}) == len(ENTRIES)
    assert all(registry.get_entry(e.name) is e for e in ENTRIES)
    assert sum(len(names) for names in FAMILY_NAMES.values()) == len(ENTRIES)


def test_the_registry_re_exports_the_data_model():
    for name in ("ModelEntry", "CheckpointSource", "License", "InputContract", "Paper", "Pretraining"):
        assert getattr(registry, name) is getattr(zoo.entry, name)


def test_every_entry_names_a_declared_architecture_and_a_converter():
    for entry in ENTRIES:
        assert entry.architecture in BY_NAME, entry.name
        assert entry.source is None or entry.source.format in formats.CONVERTERS, entry.name


def test_every_entry_family_has_its_card_prose():
    from zoo.cards.prose import GENERIC, family_for

    for module, names in FAMILY_NAMES.items():
        for name in names:
            assert family_for(registry.get_entry(name)) is not GENERIC, (module, name)


# --------------------------------------------------------------------------------------------------------------
# architectures
# --------------------------------------------------------------------------------------------------------------


def test_architecture_declarations_are_unique_and_complete():
    assert len(BY_NAME) == len(DECLARATIONS)
    assert ARCHITECTURES == {a.name: a.builder for a in DECLARATIONS}
    assert set(ARGUMENTS) == set(BY_NAME)  # every declared architecture has its spec estimate
    for a in DECLARATIONS:
        assert a.family in typing.get_args(WeightFamily) and a.task in typing.get_args(Task)
        assert callable(get_builder(a.name))


def test_declared_nnunet_classes_exist_with_their_names():
    from zoo.archs.nested_unet import NNUNET_CLASS_PATH

    for a in NNUNET_CLASSES:
        module = importlib.import_module(a.builder.partition(":")[0])
        assert isinstance(getattr(module, a.nnunet.class_name), type), a.name
        assert set(a.nnunet.required_kwargs) <= a.nnunet.allowed_kwargs
    assert BY_NAME["nested_unet"].nnunet.class_path == NNUNET_CLASS_PATH


def test_the_weight_family_is_what_the_entries_state_dicts_show():
    """nnU-Net key layout (``encoder.stages...``) exactly for the ``nnunet`` family, which the nnU-Net export
    accepts (``UNET_ARCHS``)."""
    from zoo.nnunet.export import UNET_ARCHS

    assert UNET_ARCHS == names_where(nnunet_keys=True) == names_where(family="nnunet")
    for entry in ENTRIES:
        nnunet_layout = entry.first_conv[0].startswith(("encoder.stages.", "encoder.stem."))  # ResEnc: a stem
        assert BY_NAME[entry.architecture].nnunet_keys == nnunet_layout, entry.name


def test_the_derived_sets_follow_the_declarations():
    from zoo.cards.render import NNUNET_ARCHS, SEGMENTATION_ARCHS
    from zoo.nnunet.plan_rewrite import ARCH_CHOICES
    from zoo.nnunet.plans import _CLASS_TO_ARCH, _LEGACY_CLASSES, DNA_CLASSES

    assert SEGMENTATION_ARCHS == set(names_where(task="segmentation"))
    assert NNUNET_ARCHS <= SEGMENTATION_ARCHS and all(DNA_CLASSES[a].startswith("dynamic_network_architectures.")
                                                      for a in NNUNET_ARCHS)
    assert set(DNA_CLASSES) == {a.name for a in NNUNET_CLASSES} == set(_CLASS_TO_ARCH.values())
    assert all(DNA_CLASSES[arch].endswith("." + cls) for cls, arch in _CLASS_TO_ARCH.items())
    assert set(_LEGACY_CLASSES) == {cls for cls, arch in _CLASS_TO_ARCH.items() if arch in NNUNET_ARCHS}
    assert set(ARCH_CHOICES.values()) <= set(DNA_CLASSES)
