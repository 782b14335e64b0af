"""Datasets: a Spec -> sampled examples -> verified golden binaries -> records on disk.

``sample`` draws (prompt, a, b) by seed; ``golden`` builds and verifies each binary;
``quality`` checks the spec's promises; ``build`` writes it all atomically (``exe-coder build``).
``records`` is the JSONL schema and its reader (``load_examples``); ``numwords`` spells
numbers for stage3.
"""
