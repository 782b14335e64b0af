"""Decoding: prompt in, a track's text out, executable back.

    track.py           the track seam: target (train), constraint (decode), realize (text -> binary); Track A
    grammar.py         grammar/track_a.lark -> token masks (allowed, next_state) for given bounds; parse
    generate.py        batched, KV-cached generation in MLX, masked on device; greedy or seeded sampling
    reconstruct.py     patch text -> the template's image with new operands, finalized
    infer.py           predictors (model, oracle, regex baseline) -> reconstruct -> verify -> Prediction
    prompt_check.py    after decoding, for the user: could the operands have come from the prompt?
    prediction.py      the Prediction record (shared contract)
    regex_baseline.py  the rule-based baseline's operand extraction (owned by evaluation)
"""
