"""The _text stages: stage1 and stage1b on the add_text program, and nothing else changed.

Results on add and add_text are reported side by side, so each pair of specs must draw the same
prompts and operands, and each pair of configs must train the same model the same way.
"""

from __future__ import annotations

import pytest

from exe_coder.dataset.sample import sample_stage
from exe_coder.paths import CONFIGS_DIR, SPECS_DIR
from exe_coder.spec import load_spec
from exe_coder.spec.model import SPLITS
from exe_coder.train.config import load_config

PAIRS = [("stage1", "stage1_text"), ("stage1b", "stage1b_text")]
CONFIGS = [
    ("sft_stage1_trackb", "sft_stage1_text_trackb"),
    ("sft_stage1b_trackb", "sft_stage1b_text_trackb"),
    ("sft_stage1_pilot", "sft_stage1_text_pilot"),
    ("sft_stage1b_magnitude_shift", "sft_stage1b_text_magnitude_shift"),
]


@pytest.mark.parametrize(("base", "text"), PAIRS)
def test_a_text_spec_differs_from_its_base_in_stage_and_program_only(base, text):
    a, t = load_spec(SPECS_DIR / f"{base}.spec"), load_spec(SPECS_DIR / f"{text}.spec")
    assert (a.stage, a.program, t.stage, t.program) == (base, "add", text, "add_text")
    assert a.model_dump(exclude={"stage", "program"}) == t.model_dump(exclude={"stage", "program"})
    # sampling is seeded by (seed, split): the same prompts and operands, ids aside (they name the stage)
    sizes = {"train": 48, "val": 16, "test": 16}
    drawn_a, drawn_t = sample_stage(a, sizes), sample_stage(t, sizes)
    strip = lambda ds: [(d.prompt, d.template_id, d.a, d.b, d.sign_pattern, d.magnitude_pair) for d in ds]  # noqa: E731
    for split in SPLITS:
        assert strip(drawn_a[split]) == strip(drawn_t[split]) and len(drawn_a[split]) == sizes[split]


@pytest.mark.parametrize(("base", "text"), CONFIGS)
def test_a_text_config_trains_like_its_base(base, text):
    a, t = (load_config(CONFIGS_DIR / f"{name}.toml").model_dump() for name in (base, text))
    stage = a["data"]["train_jsonl"].split("/")[-2]
    for split in ("train", "val", "test"):
        assert t["data"][f"{split}_jsonl"] == a["data"][f"{split}_jsonl"].replace(f"/{stage}/", f"/{stage}_text/")
        a["data"][f"{split}_jsonl"] = t["data"][f"{split}_jsonl"]
    assert (t["run"]["name"], t["run"]["output_dir"]) == (text, f"outputs/checkpoints/{text}")
    a["run"].update(name=text, output_dir=t["run"]["output_dir"])
    if a["data"]["track"] == "strict_one_shot":  # add_text's image is longer: room to generate it
        assert t["model"]["seq_len"] > a["model"]["seq_len"]
        a["model"]["seq_len"] = t["model"]["seq_len"]
    assert a == t
