"""Training data: Examples -> token arrays -> deterministic batches.

The batch at step ``s`` is a pure function of (seed, s): epoch ``e = s // steps_per_epoch``
shuffles with a generator seeded by ``(seed, e)``, and the step takes its slice of that
permutation. So a resumed run sees exactly the batches an uninterrupted run would.

Length bucketing (to spend compute on real tokens): the epoch's permutation is cut into windows
of ``window_batches`` batches; each window is sorted by row length and cut into batches, whose
order is then shuffled (seeded by (seed, e) again). Rows of one batch thus have near-equal
lengths, so padding to the longest wastes little (bench/train.py prints the share). The global
batch never depends on the number of ranks; ``shard`` gives a rank its rows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exe_coder.dataset import operand_spans
from exe_coder.dataset.records import Example, patch_text
from exe_coder.errors import UserError
from exe_coder.model.tokenizer import PAD, Tokenizer
from exe_coder.train import renaming

LENGTH_BUCKET = 16  # batches are padded to a multiple of this, so the compiled step sees few shapes
WINDOW_BATCHES = 16  # length-sorting window; 1 = the plain shuffled batches of before


def manifest_sha256(train_jsonl: str | Path) -> str | None:
    """The sha256 of ``manifest.json`` beside the train split, if the build wrote one."""
    manifest = Path(train_jsonl).parent / "manifest.json"
    if not manifest.is_file():
        return None
    return hashlib.sha256(manifest.read_bytes()).hexdigest()


@dataclass(frozen=True)
class WordRows:
    """What renaming operands in words needs (``renaming``): each eligible row's example and
    operand spans, the track's target function, and the longest row the model takes."""

    plans: dict[int, tuple[Example, tuple[operand_spans.Span, operand_spans.Span]]]
    target: Callable[[Example], str | list[int]]
    seq_len: int


@dataclass(frozen=True)
class TokenizedSplit:
    """Rows ``BOS prompt SEP target EOS`` right-padded with PAD to the longest row."""

    tokens: np.ndarray  # [N, T] int32
    target_mask: np.ndarray  # [N, T] bool: target bytes and EOS (the SFT loss)
    prompt_mask: np.ndarray  # [N, T] bool: prompt bytes and SEP (the textmix LM loss)
    lengths: np.ndarray  # [N] int32
    digit_copies: np.ndarray  # [N] bool: every digit run of the target is a digit run of the prompt
    words: WordRows | None = None  # rows whose operands can be renamed at the string level

    def __len__(self) -> int:
        return len(self.lengths)


def tokenize(
    examples: list[Example],
    tokenizer: Tokenizer,
    seq_len: int,
    path: str | Path = "<data>",
    *,
    target: Callable[[Example], str],
) -> TokenizedSplit:
    """``target`` is the track's: the text the model learns to write for each example."""
    rows, masks, copies = [], [], []
    plans = {}
    for n, ex in enumerate(examples, 1):
        want = target(ex)
        text = want if isinstance(want, str) else bytes(t for t in want if t < 256).decode("latin-1")
        copies.append(digit_copies(ex.prompt, text))
        # the rest (operands in words, "1,250", ...) are renamed as text, where the target is the
        # example's patch in either order (Track A; not Track B's image bytes)
        if not copies[-1] and text in (ex.target, patch_text(ex.b, ex.a)) and (spans := operand_spans.plan(ex.prompt, ex.a, ex.b)):
            plans[n - 1] = (ex, spans)
        ids, mask = tokenizer.encode_example(ex.prompt, want)
        if len(ids) > seq_len:
            raise UserError(
                f"example {ex.id} is {len(ids)} tokens, longer than [model].seq_len = {seq_len}",
                path,
                n,
            )
        rows.append(ids)
        masks.append(mask)
    T = max(len(r) for r in rows)
    tokens = np.full((len(rows), T), PAD, dtype=np.int32)
    target_mask = np.zeros((len(rows), T), dtype=bool)
    prompt_mask = np.zeros((len(rows), T), dtype=bool)
    for i, (ids, mask) in enumerate(zip(rows, masks)):
        tokens[i, : len(ids)] = ids
        target_mask[i, : len(ids)] = mask
        prompt_mask[i, : len(ids)] = _prompt_mask(mask)
    lengths = np.array([len(r) for r in rows], dtype=np.int32)
    words = WordRows(plans, target, seq_len) if plans else None
    return TokenizedSplit(tokens, target_mask, prompt_mask, lengths, np.array(copies, dtype=bool), words)


def digit_copies(prompt: str, target: str) -> bool:
    """Every run of digits in ``target`` is also a run of digits in ``prompt``: the target's
    digits are copies of the prompt's (digit renderings, not numbers in words), so renaming the
    digits alike in both keeps the example true (``permute_digits``)."""
    runs = set(_DIGIT_RUN.findall(prompt))
    return all(run in runs for run in _DIGIT_RUN.findall(target))


@dataclass(frozen=True)
class Batch:
    inputs: np.ndarray  # [B, T-1] tokens the model reads
    targets: np.ndarray  # [B, T-1] the next token at each position
    target_mask: np.ndarray  # [B, T-1] float32: 1 where the next token is a target token
    prompt_mask: np.ndarray  # [B, T-1] float32: 1 where the next token is a prompt token


def lm_mask_causal_for_digit_ends(batch: Batch) -> Batch:
    """The textmix LM loss without the prompt bytes that follow a digit. With ``digit_ends`` each
    digit knows how many digits of its number are still to come, so predicting the byte after a
    digit would read it off that feature; after a non-digit every number read so far has ended,
    so the features up to there say nothing about what comes next."""
    after_digit = (batch.inputs >= ord("0")) & (batch.inputs <= ord("9"))
    return Batch(batch.inputs, batch.targets, batch.target_mask, batch.prompt_mask * ~after_digit)


def lm_mask_causal_for_signs(batch: Batch) -> Batch:
    """The textmix LM loss without the bytes that follow a '-' or 0x92 (U+2212's last byte): with
    ``signed_numbers`` such a byte knows whether a number follows it."""
    after_sign = _sign_bytes(batch.inputs)
    return Batch(batch.inputs, batch.targets, batch.target_mask, batch.prompt_mask * ~after_sign)


def _sign_bytes(tokens: np.ndarray) -> np.ndarray:
    """Where ``tokens`` hold a '-' or 0x92 (U+2212's last byte): the bytes a minus sign ends with."""
    return (tokens == ord("-")) | (tokens == 0x92)


def padding_share(batches) -> float:
    """Share of the positions the model reads that are padding (inputs == PAD)."""
    pad = total = 0
    for b in batches:
        pad += int((b.inputs == PAD).sum())
        total += b.inputs.size
    return pad / max(total, 1)


def shard(batch: Batch, rank: int, size: int) -> Batch:
    """Rank ``rank``'s rows of a global batch: every ``size``-th row, so with rows sorted by
    length each rank gets a like share of the tokens (and of the work)."""
    if size == 1:
        return batch
    return Batch(*(a[rank::size] for a in (batch.inputs, batch.targets, batch.target_mask, batch.prompt_mask)))


def make_batch(split: TokenizedSplit, idx: np.ndarray) -> Batch:
    longest = int(split.lengths[idx].max())
    T = min(-(-longest // LENGTH_BUCKET) * LENGTH_BUCKET, split.tokens.shape[1])
    tok = split.tokens[idx, :T]
    return Batch(
        inputs=tok[:, :-1],
        targets=tok[:, 1:],
        target_mask=split.target_mask[idx, 1:T].astype(np.float32),
        prompt_mask=split.prompt_mask[idx, 1:T].astype(np.float32),
    )


_DIGIT_RUN = re.compile(r"[0-9]+")


def permute_digits(
    batch: Batch, eligible: np.ndarray, rate: float, rng: np.random.Generator, zero: bool = False
) -> Batch:
    """With probability ``rate`` per eligible row, rename the digits 1-9 of that row by one random
    permutation, in its prompt and its target alike (0 stays, so no number gains a leading zero
    and magnitudes keep their digit count). The example stays true -- its target still copies
    the prompt's numbers -- but the numbers are new: an augmentation against learning the
    training operands by heart instead of copying them.

    With ``zero`` the permutation takes in 0 as well, drawn uniformly among those that give no
    number a leading zero and no '-' a lone 0 (``_may_become_zero``): otherwise a lone ``0``
    operand is as rare in training as in the data (stage0's 512 rows hold none)."""
    inputs, targets = batch.inputs.copy(), batch.targets.copy()
    chosen = np.flatnonzero(eligible & (rng.random(len(eligible)) < rate))
    for i in chosen:
        lut = np.arange(256, dtype=inputs.dtype)
        if zero:
            free = _may_become_zero(np.concatenate([inputs[i, :1], targets[i]]))  # the whole row, once
            z = rng.choice(np.flatnonzero(free))  # the digit written 0 from now on
            rest = np.delete(np.arange(10), z)
            lut[ord("0") + z] = ord("0")
            lut[ord("0") + rest] = ord("1") + rng.permutation(9)
        else:
            lut[ord("1") : ord("9") + 1] = ord("1") + rng.permutation(9)
        for row in (inputs[i], targets[i]):
            byte = row < 256  # special tokens keep their ids
            row[byte] = lut[row[byte]]
    return Batch(inputs, targets, batch.target_mask, batch.prompt_mask)


def _may_become_zero(row: np.ndarray) -> np.ndarray:
    """[10] bool: which digits may be renamed 0 in this row: none that leads a run of two or
    more digits, or a lone digit after '-' (or 0x92, U+2212's last byte). 0 itself always may."""
    digit = (row >= ord("0")) & (row <= ord("9"))
    before = np.concatenate([[-1], row[:-1]])
    starts = digit & ~np.concatenate([[False], digit[:-1]])
    longer = np.concatenate([digit[1:], [False]])
    signed = _sign_bytes(before)
    free = np.ones(10, dtype=bool)
    free[row[starts & (longer | signed)] - ord("0")] = False
    return free


def rename_operands(batch: Batch, split: TokenizedSplit, rows: np.ndarray, rate: float, rng: np.random.Generator) -> Batch:
    """``permute_digits`` for rows whose operands are words or other numerals (``split.words``):
    with probability ``rate`` per such row, rename both operands' digits 1-9 by one random
    permutation, re-render them in the prompt in their own form, style and case
    (``renaming.rename``) and rebuild the row's target; the batch is rebuilt around the new
    lengths (padded to a multiple of LENGTH_BUCKET, longest row first). Unchanged if no row is."""
    words = split.words
    draws = rng.random(len(rows)) < rate
    tokenizer = Tokenizer()
    full = np.concatenate([batch.inputs[:, :1], batch.targets], axis=1)
    t_mask = np.pad(batch.target_mask > 0, ((0, 0), (1, 0)))  # position 0 (BOS) is in neither mask
    p_mask = np.pad(batch.prompt_mask > 0, ((0, 0), (1, 0)))
    seqs = [(full[k, :n], t_mask[k, :n], p_mask[k, :n]) for k, n in enumerate(split.lengths[rows])]
    changed = False
    for k in np.flatnonzero(draws):
        if int(rows[k]) not in words.plans:
            continue
        ex, spans = words.plans[int(rows[k])]
        perm = [0, *(1 + rng.permutation(9))]
        prompt, a, b = renaming.rename(ex.prompt, ex.a, ex.b, spans, perm)
        renamed = ex.model_copy(update={"prompt": prompt, "a": a, "b": b, "target": patch_text(a, b)})
        ids, mask = tokenizer.encode_example(prompt, words.target(renamed))
        if len(ids) > words.seq_len:  # longer words ("seventy-seven" for "ten"): keep the row as it was
            continue
        seqs[k] = (np.array(ids, dtype=full.dtype), np.array(mask, dtype=bool), _prompt_mask(mask))
        changed = True
    if not changed:
        return batch
    lengths = np.array([len(s[0]) for s in seqs])
    longest = int(lengths.max())
    cap = split.tokens.shape[1] if longest <= split.tokens.shape[1] else words.seq_len
    T = min(-(-longest // LENGTH_BUCKET) * LENGTH_BUCKET, cap)
    tok = np.full((len(seqs), T), PAD, dtype=full.dtype)
    tm, pm = np.zeros((len(seqs), T), dtype=bool), np.zeros((len(seqs), T), dtype=bool)
    for i, k in enumerate(np.argsort(-lengths, kind="stable")):  # batch_at's order: longest first
        n = lengths[k]
        tok[i, :n], tm[i, :n], pm[i, :n] = seqs[k]
    return Batch(tok[:, :-1], tok[:, 1:], tm[:, 1:].astype(np.float32), pm[:, 1:].astype(np.float32))


def _prompt_mask(mask: list[bool]) -> np.ndarray:
    """The prompt bytes and SEP (not BOS): the positions the LM loss predicts from their prefix."""
    out = np.zeros(len(mask), dtype=bool)
    out[1 : mask.index(True)] = True  # mask.index(True): BOS + prompt bytes + SEP
    return out


# Prompt noise never touches what the target copies: digits and the minus sign.
_KEEP = np.zeros(256 + 8, dtype=bool)
_KEEP[[ord(c) for c in "0123456789-"]] = True
_KEEP[256:] = True  # special tokens
_NOISE_BYTES = np.array([b for b in range(32, 127) if not _KEEP[b]], dtype=np.int32)


def add_prompt_noise(batch: Batch, rate: float, rng: np.random.Generator) -> Batch:
    """Replace each prompt byte that is not a digit or '-' by a random printable byte with
    probability ``rate`` (inputs only; the loss never sees prompt positions in SFT). A cheap
    augmentation against memorising the exact wording of the training templates."""
    inputs = batch.inputs.copy()
    is_prompt = np.zeros_like(inputs, dtype=bool)
    is_prompt[:, 1:] = batch.prompt_mask[:, :-1] == 1  # input t is prompt text if it was target t-1 of the prompt
    hit = is_prompt & ~_KEEP[inputs] & (rng.random(inputs.shape) < rate)
    inputs[hit] = rng.choice(_NOISE_BYTES, size=int(hit.sum()))
    return Batch(inputs, batch.targets, batch.target_mask, batch.prompt_mask)


class Batcher:
    """Fixed-size shuffled batches; an epoch drops the last partial batch (reshuffled next epoch).

    With ``prompt_noise`` > 0 the batch at step s also carries prompt noise drawn from (seed, s),
    and with ``digit_permutation`` > 0 renamed digits (``permute_digits``; for operands in words
    and other numerals ``rename_operands``), also from (seed, s).
    """

    def __init__(
        self,
        split: TokenizedSplit,
        batch_size: int,
        seed: int,
        prompt_noise: float = 0.0,
        window_batches: int = WINDOW_BATCHES,
        digit_permutation: float = 0.0,
        digit_place_shift: int = 0,
        number_ordinal_shift: int = 0,
        digit_permutation_zero: bool = False,
    ):
        self.split = split
        self.batch_size = min(batch_size, len(split))
        self.seed = seed
        self.prompt_noise = prompt_noise
        self.digit_permutation = digit_permutation
        self.digit_place_shift = digit_place_shift
        self.number_ordinal_shift = number_ordinal_shift
        self.digit_permutation_zero = digit_permutation_zero
        self.window_batches = window_batches
        self.steps_per_epoch = len(split) // self.batch_size
        self._cached: tuple[int, np.ndarray] | None = None

    def _order(self, epoch: int) -> np.ndarray:
        """The epoch's rows in batch order: shuffled, length-sorted within windows, batch order shuffled."""
        if self._cached is None or self._cached[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            B = self.batch_size
            perm = rng.permutation(len(self.split))[: self.steps_per_epoch * B]
            if self.window_batches > 1:
                window = self.window_batches * B
                batches = []
                for start in range(0, len(perm), window):
                    w = perm[start : start + window]
                    w = w[np.argsort(self.split.lengths[w], kind="stable")]
                    batches += [w[j : j + B] for j in range(0, len(w), B)]
                perm = np.concatenate([batches[k] for k in rng.permutation(len(batches))])
            self._cached = (epoch, perm)
        return self._cached[1]

    def batch_at(self, step: int) -> Batch:
        epoch, i = divmod(step, self.steps_per_epoch)
        idx = self._order(epoch)[i * self.batch_size : (i + 1) * self.batch_size]
        idx = np.sort(idx)
        rows = idx[np.argsort(-self.split.lengths[idx], kind="stable")]
        batch = make_batch(self.split, rows)
        if self.digit_permutation > 0.0:
            rng = np.random.default_rng([self.seed, step, 2])
            batch = permute_digits(batch, self.split.digit_copies[rows], self.digit_permutation, rng, self.digit_permutation_zero)
            if self.split.words is not None:  # a stream of its own: digit-only configs stay bit-identical
                rng = np.random.default_rng([self.seed, step, 3])
                batch = rename_operands(batch, self.split, rows, self.digit_permutation, rng)
        if self.prompt_noise > 0.0:
            batch = add_prompt_noise(batch, self.prompt_noise, np.random.default_rng([self.seed, step, 1]))
        return batch

    def place_shift_at(self, step: int) -> np.ndarray | None:
        """Each row's digit-place offset at step s, uniform in 0..digit_place_shift, drawn from
        (seed, s) like the rest of the batch; None when the option is off."""
        return self._offsets(step, self.digit_place_shift, stream=4)

    def ordinal_shift_at(self, step: int) -> np.ndarray | None:
        """Each row's number-ordinal offset at step s, uniform in 0..number_ordinal_shift (a
        stream of its own, so the place shifts stay as they were); None when the option is off."""
        return self._offsets(step, self.number_ordinal_shift, stream=5)

    def _offsets(self, step: int, bound: int, stream: int) -> np.ndarray | None:
        if bound == 0:
            return None
        rng = np.random.default_rng([self.seed, step, stream])
        return rng.integers(0, bound + 1, self.batch_size).astype(np.int32)


def eval_batches(split: TokenizedSplit, batch_size: int, limit: int | None = None):
    """The first ``limit`` rows in file order, in batches (deterministic, no shuffling)."""
    n = len(split) if limit is None else min(limit, len(split))
    for start in range(0, n, batch_size):
        yield make_batch(split, np.arange(start, min(start + batch_size, n)))
