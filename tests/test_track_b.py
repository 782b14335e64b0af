"""Track B: the model writes every byte of the image before the signature; finalize signs it."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.codegen.finalize import finalize_unsigned, unsigned_image
from exe_coder.dataset.golden import golden_image
from exe_coder.dataset.records import Example, patch_text
from exe_coder.decode import image_text
from exe_coder.decode.image_text import ImageTextError, encode_image, expand, text_to_tokens, tokens_to_text
from exe_coder.decode.infer import run_inference, verify_reconstruction
from exe_coder.decode.track import FullImageTrack, PatchTrack, track_for
from exe_coder.evaluate.regions import image_report, layout_regions, markdown_lines, region_errors
from exe_coder.model.tokenizer import EOS, SEP
from exe_coder.spec.model import sign_pattern

OPERANDS = [(17, -4), (0, 0), (-1000, 1000), (-(2**31), 2**31 - 1), (65536, -65536), (1, -1)]


def example(a: int, b: int, i: int = 0, program: str = "add") -> Example:
    return Example(
        id=f"ex-{i}", split="train", prompt=f"what is {a} plus {b}", template_id="t0", program=program,
        a=a, b=b, expected_stdout=f"{a + b}\n", target=patch_text(a, b), sign_pattern=sign_pattern(a, b),
        magnitude_pair="core/core", numerals="digits/digits", binary_path="", binary_sha256=hashlib.sha256(golden_image(program, a, b)).hexdigest(),
    )


@pytest.mark.parametrize("a,b", OPERANDS)
def test_target_expands_to_the_golden_unsigned_image_and_finalizes_to_the_golden_binary(a, b):
    track, ex = FullImageTrack(), example(a, b)
    golden = golden_image("add", a, b)
    tokens = bytes(track.target_tokens(ex))
    unsigned = expand(tokens)
    assert unsigned == golden[:520] + bytes(16) + golden[536:16416]  # before the signature (0x4020), UUID zero
    assert unsigned == unsigned_image(golden)
    assert finalize_unsigned(unsigned) == golden
    assert 480 <= len(tokens) <= 530  # the measured target length (README: ~507 tokens at stage1 magnitudes)
    rec = track.realize(track.target(ex), "no such program")  # program is not read
    assert rec.parsed and rec.operands is None and rec.image == golden


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40), st.integers(0, 20000).map(bytes)), max_size=8).map(b"".join))
def test_tokenization_round_trips_arbitrary_bytes(data: bytes):
    tokens = encode_image(data)
    assert expand(tokens) == data
    assert text_to_tokens(tokens_to_text(list(tokens))) == tokens
    assert len(tokens) <= len(data) + 1 + data.count(0)  # never much longer than the bytes


@pytest.mark.parametrize(
    "tokens,match",
    [(b"\x01\x00", "ends inside a zero run"), (b"\x00\xff\xff\xff\xff\x01", "more than 4 tokens"), (b"\x00\xff\xff\x7f", "expands past")],
)
def test_malformed_token_streams_are_refused(tokens, match):
    with pytest.raises(ImageTextError, match=match):
        expand(tokens)


def test_special_tokens_and_wrong_lengths_give_no_image():
    track, golden = FullImageTrack(), golden_image("add", 3, 4)
    ids = list(encode_image(unsigned_image(golden)))
    text = track.decode_tokens(ids[:10] + [SEP] + ids[10:] + [EOS, 7])
    assert "<sep>" in text
    rec = track.realize(text, "add")
    assert not rec.parsed and rec.image is None and "special token <sep>" in rec.error
    short = tokens_to_text(list(encode_image(unsigned_image(golden)[:-1])))
    rec = track.realize(short, "add")
    assert rec.image is None and "LC_CODE_SIGNATURE 0x4020+0x120 lies outside the file" in rec.error
    long = tokens_to_text(list(encode_image(unsigned_image(golden) + b"\x01")))
    rec = track.realize(long, "add")
    assert rec.image is None and "16417 bytes, but LC_CODE_SIGNATURE puts the signature at 0x4020" in rec.error
    assert track.realize("", "add").image is None


def _forbid_the_reconstructor(monkeypatch):
    """Everything that could hand Track B bytes the model did not write raises."""
    import exe_coder.codegen.program as program
    import exe_coder.decode.reconstruct as reconstruct
    import exe_coder.decode.track as track_module

    def refuse(*_, **__):
        raise AssertionError("Track B inference reached the reconstructor / program template")

    for mod, name in ((reconstruct, "reconstruct"), (reconstruct, "reconstruct_operands"), (track_module, "reconstruct"), (track_module, "golden_image")):
        monkeypatch.setattr(mod, name, refuse)
    monkeypatch.setattr(program.ProgramTemplate, "patch", refuse)
    monkeypatch.setattr(program.ProgramTemplate, "build", refuse)


class FixedTexts:
    mode = "fixed"

    def __init__(self, texts: dict[str, str]):
        self.texts = texts

    def predict(self, examples):
        return [self.texts[e.id] for e in examples]


def test_track_b_inference_never_calls_the_reconstructor(monkeypatch):
    exs = [example(a, b, i) for i, (a, b) in enumerate(OPERANDS[:3])]
    track = FullImageTrack()
    texts = {e.id: track.target(e) for e in exs}
    _forbid_the_reconstructor(monkeypatch)
    preds = run_inference(exs, FixedTexts(texts), track)
    assert all(p.exact_byte_match and p.answer_correct and p.track == "strict_one_shot" for p in preds)
    # the guard works: Track A through the same path does reach it
    with pytest.raises(AssertionError, match="reconstructor"):
        run_inference(exs[:1], FixedTexts({exs[0].id: exs[0].target}), PatchTrack())


@pytest.mark.parametrize("a,b", OPERANDS)
def test_add_text_target_spells_the_operands_digits(a, b):
    """add_text's image holds each operand as its decimal text: the target's tokens carry the
    prompt's digits (NUL padding compressed as a zero run), and it realizes to the golden binary."""
    track, ex = FullImageTrack(), example(a, b, program="add_text")
    golden = golden_image("add_text", a, b)
    tokens = bytes(track.target_tokens(ex))
    assert expand(tokens) == unsigned_image(golden) and finalize_unsigned(expand(tokens)) == golden
    field = lambda v: str(v).encode() + b"\x00" + bytes([11 - len(str(v))])  # noqa: E731  digits, then one zero run
    assert field(a) + field(b) in tokens
    assert 560 <= len(tokens) <= 590  # measured: 567 (0, 0) .. 587 (both -2147483648)
    assert track.realize(track.target(ex), "add").image == golden


@pytest.mark.parametrize("a,b", [(17, -4), (-250, 3), (905, 905)])
def test_prompt_order_target_is_the_image_of_the_operands_as_the_prompt_writes_them(a, b):
    """``target_order = "prompt"``: a b-first phrasing's target is the golden image of (b, a) --
    the same sum, so the same output; an a-first one (or |a| == |b|) keeps the image as built."""
    ordered = FullImageTrack(program="add_text", target_order="prompt")
    b_first = example(a, b, program="add_text").model_copy(update={"prompt": f"add {b} to {a}"})
    want = (a, b) if abs(a) == abs(b) else (b, a)
    assert expand(bytes(ordered.target_tokens(b_first))) == unsigned_image(golden_image("add_text", *want))
    a_first = example(a, b, program="add_text")
    assert ordered.target_tokens(a_first) == FullImageTrack().target_tokens(a_first)
    rec = ordered.realize(ordered.target(b_first), "add_text")
    assert verify_reconstruction(rec, b_first.expected_stdout).answers(b_first.expected_stdout)


def test_every_shipped_program_has_a_generation_budget_with_room():
    """Track B may generate a program's longest golden target, its EOS and ~15% more."""
    from exe_coder.paths import TEMPLATE_SUFFIX, TEMPLATES_DIR, shipped

    probes = [(0, 0), (-(2**31), -(2**31)), (2**31 - 1, 2**31 - 1), (-(2**31), 2**31 - 1), (-1000, 999), (-7, 65536)]
    for program in shipped(TEMPLATES_DIR, TEMPLATE_SUFFIX):
        longest = max(len(encode_image(unsigned_image(golden_image(program, a, b)))) for a, b in probes)
        budget = track_for("strict_one_shot", program=program).max_tokens
        assert 1.15 * (longest + 1) <= budget <= 1.25 * (longest + 1), (program, longest, budget)
    assert FullImageTrack(program="add").max_tokens == FullImageTrack().max_tokens == 600  # add decodes as before
    assert FullImageTrack(program="add_text").max_tokens == 680 and FullImageTrack.max_tokens == 600
    assert track_for("template_delta_operand_patch", program="add_text").max_tokens is None


def test_region_breakdown_of_an_add_text_image():
    """Each text field is one region ("a text", "b text"); the code words are as add's."""
    regions = layout_regions("add_text")
    by_name = {r.name: r for r in regions}
    gold = unsigned_image(golden_image("add_text", 17, -4))
    a, b = by_name["a text"], by_name["b text"]
    assert a.end - a.start == 12 and b.start == a.end
    assert gold[a.start : a.end] == b"17" + bytes(10) and gold[b.start : b.end] == b"-4" + bytes(10)
    assert all(r.start >= b.end or r.end <= a.start for r in regions if r not in (a, b))  # no word overlaps them
    bad = bytearray(gold)
    bad[a.start + 1] = ord("8")  # "18": a misread digit of a
    bad[b.start : b.start + 3] = b"-40"  # one digit too many for b
    errors = {r.name: n for r, n in zip(regions, region_errors(bytes(bad), gold, regions)) if n}
    assert errors == {"a text": 1, "b text": 1}
    ex = example(17, -4, program="add_text")
    from exe_coder.decode.infer import predict_one

    track = FullImageTrack()
    preds = [predict_one(ex, t, track, "fixed") for t in (track.target(ex), tokens_to_text(list(encode_image(bytes(bad)))))]
    assert preds[0].answer_correct and preds[1].outcome.stdout == b"-22\n"  # it runs, with the digits it holds
    report = image_report(preds)
    rows = {r.region: r for r in report.regions}
    assert rows["a text"].wrong_predictions == rows["b text"].wrong_predictions == 1 and report.image_exact_match_rate == 0.5
    # read back: a "17" then "18" (a digit wrong), b "-4" then "-40" (a digit too many)
    fields = {f.operand: (f.n, f.sign_rate, f.length_rate, f.char_rate, f.exact_rate) for f in report.text_fields}
    assert fields == {"a": (2, 1.0, 1.0, 0.75, 0.5), "b": (2, 1.0, 0.5, 1.0, 0.5)}
    assert "### Operand text fields read back" in markdown_lines(report)


def test_a_swapped_image_is_exact_in_either_order_and_wrong_nowhere():
    """An image of (b, a) prints the same sum: the strict exact rate misses it, the either-order
    rate counts it, and the regions compare it with the swapped golden image (no wrong field);
    a wrong digit in a swapped image is still one wrong field, not three."""
    from exe_coder.decode.infer import predict_one

    ex = example(17, -4, program="add_text")
    track = FullImageTrack()
    swapped = unsigned_image(golden_image("add_text", -4, 17))
    bad = bytearray(swapped)
    b_text = next(r for r in layout_regions("add_text") if r.name == "b text")
    bad[b_text.start] = ord("9")  # "97" for 17, in the second field
    preds = [predict_one(ex, tokens_to_text(list(encode_image(img))), track, "fixed") for img in (swapped, bytes(bad))]
    assert preds[0].answer_correct and not preds[0].exact_byte_match
    report = image_report(preds)
    assert report.image_exact_match_rate == 0.0 and report.image_exact_either_order_rate == 0.5
    wrong = {r.region: r.wrong_predictions for r in report.regions if r.wrong_predictions}
    assert wrong == {"b text": 1}
    assert "with the operands in either order: 0.500" in markdown_lines(report)[2]


def test_track_for_names_both_tracks():
    assert isinstance(track_for("strict_one_shot", min_int=-5, max_int=5), FullImageTrack)
    assert FullImageTrack().constraint is None and PatchTrack().max_tokens is None


def test_region_breakdown_of_a_hand_corrupted_image():
    ex = example(17, -4)
    gold = unsigned_image(golden_image("add", 17, -4))
    names = [r.name for r in layout_regions("add")]
    bad = bytearray(gold)
    bad[4] ^= 0x01  # header: cputype
    text_at = next(r.start for r in layout_regions("add") if r.name.startswith("__text[0]"))
    word = struct.unpack_from("<I", bad, text_at)[0]
    struct.pack_into("<I", bad, text_at, word ^ (0b101 << 5))  # two bits of movz's imm16 (operand a)
    main = next(r for r in layout_regions("add") if r.name.endswith("LC_MAIN"))
    bad[main.start + 8] ^= 0x10  # LC_MAIN entryoff
    errors = dict(zip(names, region_errors(bytes(bad), gold, layout_regions("add"))))
    wrong = {k: v for k, v in errors.items() if v}
    assert wrong == {"header": 1, "__text[0] mov operand field": 2, main.name: 1}

    from exe_coder.decode.infer import predict_one

    track = FullImageTrack()
    good = predict_one(ex, track.target(ex), track, "fixed")
    corrupt = predict_one(ex, tokens_to_text(list(encode_image(bytes(bad)))), track, "fixed")
    report = image_report([good, corrupt])
    assert report.n == 2 and report.image_exact_match_rate == 0.5 and report.length_mismatch == 0
    by_name = {r.region: r for r in report.regions}
    assert by_name["__text[0] mov operand field"].wrong_predictions == 1
    assert by_name["__text[0] mov other fields"].wrong_predictions == 0
    assert image_report([p.model_copy(update={"track": PatchTrack.name}) for p in (good, corrupt)]) is None
    assert report.text_fields == [] and "### Operand text fields read back" not in markdown_lines(report)  # add: no text


def test_image_text_module_names_no_vocabulary_beyond_bytes():
    """Track B's tokens are byte ids: Track A's 260-token vocabulary is unchanged."""
    from exe_coder.model.tokenizer import VOCAB_SIZE

    assert VOCAB_SIZE == 260 and max(encode_image(unsigned_image(golden_image("add", -7, 9)))) < 256
    assert image_text.MAX_IMAGE >= 16416


def test_run_stage_track_b_picks_the_stage_track_b_config():
    from exe_coder.errors import UserError
    from exe_coder.stages import default_paths

    assert default_paths("stage1", track="b").config.name == "sft_stage1_trackb.toml"
    assert default_paths("stage1b", track="b").config.name == "sft_stage1b_trackb.toml"
    assert default_paths("stage1").config.name == "sft_stage1_pilot.toml"
    assert default_paths("stage1_text", track="b").config.name == "sft_stage1_text_trackb.toml"
    assert default_paths("stage1b_text", track="b").config.name == "sft_stage1b_text_trackb.toml"
    assert default_paths("stage1b_text").config.name == "sft_stage1b_text_magnitude_shift.toml"
    with pytest.raises(UserError, match="no Track B config for stage 'stage2'"):
        default_paths("stage2", track="b")


@pytest.mark.parametrize("name", ["sft_stage1_trackb", "sft_stage1b_trackb", "sft_stage1_text_trackb", "sft_stage1b_text_trackb"])
def test_shipped_track_b_configs_train_and_fit_their_longest_sequences(name):
    from pathlib import Path

    from exe_coder.model.tokenizer import Tokenizer
    from exe_coder.paths import CONFIGS_DIR, SPECS_DIR
    from exe_coder.spec import load_spec
    from exe_coder.train.config import load_config
    from exe_coder.train.loop import check_supported

    cfg = load_config(CONFIGS_DIR / f"{name}.toml")
    check_supported(cfg)
    program = load_spec(SPECS_DIR / f"{Path(cfg.data.train_jsonl).parent.name}.spec").program
    track = track_for(cfg.data.track, program=program)  # as decoding builds it: the budget of its program
    examples = (example(a, b, program=program) for a in (-1000, 0, 1000) for b in (-1000, 999))
    longest = max(examples, key=lambda e: len(track.target_tokens(e)))
    ids, _ = Tokenizer().encode_example("x" * 160, track.target_tokens(longest))
    assert len(ids) <= cfg.model.seq_len and 162 + track.max_tokens <= cfg.model.seq_len


@pytest.mark.parametrize("prompt", ["what is 17 plus -4", "arm64: print 17 + -4, step 2 of 3"])
def test_track_b_operand_fields_get_number_ordinals_of_their_own(prompt):
    """Each operand field of an add_text image has a number-ordinal row no other number in the
    sequence shares, however many numbers the prompt holds, under sft_stage1b_text_trackb's
    counting (output counted from 1, a table of 16); one sequence-wide count in 8 rows gives
    both fields the saturated row of the 13 machine-code digit runs before them."""
    import mlx.core as mx
    import numpy as np

    from exe_coder.model.tokenizer import Tokenizer
    from exe_coder.model.transformer import digit_places, from_sep, number_ordinals
    from exe_coder.paths import CONFIGS_DIR
    from exe_coder.train.config import load_config

    model = load_config(CONFIGS_DIR / "sft_stage1b_text_trackb.toml").model
    assert model.output_ordinals == "restart"
    ex = example(17, -4, program="add_text")
    ids, _ = Tokenizer().encode_example(prompt, FullImageTrack().target_tokens(ex))
    image = bytes(ids[ids.index(SEP) + 1 : -1])  # the target's byte tokens (EOS dropped)
    field_a = ids.index(SEP) + 1 + image.index(b"17\x00")
    field_b = ids.index(SEP) + 1 + image.index(b"4\x00", field_a - ids.index(SEP))
    tokens = mx.array([ids])
    places = digit_places(tokens)

    def rows(ordinals, limit):
        rows = np.minimum(np.array(ordinals)[0], limit)
        starts = np.flatnonzero(np.array(places)[0] == 1)
        return rows[field_a], rows[field_b], [rows[i] for i in starts if i not in (field_a, field_b)]

    a, b, others = rows(number_ordinals(places, after_sep=from_sep(tokens)), model.max_number_ordinal)
    assert a != b and a not in others and b not in others
    a, b, others = rows(number_ordinals(places), 8)  # the default count
    assert a == b == 8 and 8 in others
