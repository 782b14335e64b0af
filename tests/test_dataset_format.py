"""The built dataset as others read it: one column type per field across splits (Hugging Face
``datasets`` loads all three together), binary paths relative to the data folder, a card."""

from __future__ import annotations

import json
import shutil

import pytest

from exe_coder.dataset.build import CARD, DATA_LICENSE, MANIFEST, RECORD_FORMAT, build_stage, existing_build
from exe_coder.dataset.records import load_examples
from exe_coder.errors import UserError
from exe_coder.spec import load_spec
from tests._spec_text import write_spec

SIZES = {"train": 12, "val": 16, "test": 8}
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("format")
    spec = load_spec(write_spec(root))
    build_stage(spec, root / "data" / "processed" / "tiny", root / "outputs" / "bin" / "tiny",
                jobs=1, sizes=SIZES, progress=False)
    return spec, root, root / "data" / "processed" / "tiny"


def _json_type(value) -> str:
    return "null" if value is None else type(value).__name__


def test_every_field_has_one_json_type_across_all_splits(built):
    # a null-typed column in one split and a string one in another breaks
    # datasets.load_dataset("json", data_files={"train": ..., "val": ..., "test": ...})
    _, _, data = built
    types: dict[str, set[str]] = {}
    for split in SPLITS:
        for line in (data / f"{split}.jsonl").read_text().splitlines():
            for key, value in json.loads(line).items():
                types.setdefault(key, set()).add(_json_type(value))
    assert {k: v for k, v in types.items() if len(v) != 1} == {}
    assert types["binary_path"] == {"str"}


def test_binary_path_resolves_from_the_data_folder_even_after_a_move(built):
    _, root, data = built
    moved = root.parent / f"{root.name}-moved"
    shutil.copytree(root, moved)
    for split in ("val", "test"):
        for ex in load_examples(moved / "data" / "processed" / "tiny" / f"{split}.jsonl"):
            assert ex.binary_path.startswith("../../../outputs/bin/tiny/")
            path = ex.binary_file(moved / "data" / "processed" / "tiny")
            assert path.resolve().is_relative_to(moved.resolve()) and path.is_file()
    assert {ex.binary_file(data) for ex in load_examples(data / "train.jsonl")} == {None}


@pytest.mark.parametrize(
    ("split", "field", "older", "message"),
    [
        ("train", '"binary_path":""', '"binary_path":null', "binary_path"),  # record format 1
        ("val", '"numerals":"digits/digits",', "", "record format 3"),  # format 2: no numerals
    ],
)
def test_a_record_of_an_older_format_asks_for_a_rebuild(built, tmp_path, split, field, older, message):
    _, _, data = built
    old = tmp_path / f"{split}.jsonl"
    old.write_text((data / f"{split}.jsonl").read_text().replace(field, older))
    with pytest.raises(UserError, match=rf"{split}\.jsonl:1: .*{message}.*exe-coder build --force"):
        load_examples(old)


def test_a_build_of_the_older_format_is_not_reused(built, tmp_path):
    spec, root, data = built
    assert existing_build(spec, data, SIZES)["record_format"] == RECORD_FORMAT
    copy = tmp_path / "tiny"
    shutil.copytree(data, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    del manifest["record_format"]
    (copy / MANIFEST).write_text(json.dumps(manifest))
    assert existing_build(spec, copy, SIZES) is None


def test_the_dataset_card_states_sizes_templates_magnitudes_spec_hash_and_licence(built):
    spec, _, data = built
    card = (data / CARD).read_text()
    manifest = json.loads((data / MANIFEST).read_text())
    assert card.startswith(f"---\nlicense: {DATA_LICENSE.lower()}\n")
    assert spec.sha256() in card and f"{DATA_LICENSE}:" in card
    for split, n in SIZES.items():
        assert f"| {split} | {n} |" in card
    assert "3 train templates; 2 held out (never in train): h1, h2." in card
    assert "| h1 | held out | 0 |" in card and "| t1 | train |" in card
    assert "magnitudes core 0..39; held out 40..50" in card and "Operands -50..50" in card
    assert "Numerals (relative weights): digits 1;" in card
    assert "(sizes overridden: a smoke build)" in card and manifest["license"] == DATA_LICENSE
