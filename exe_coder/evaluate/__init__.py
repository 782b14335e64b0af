"""Evaluation: predictions in, numbers out (``evaluation.md``).

    metrics.py  per-prediction metrics, reward, taxonomy, latencies, training losses
    slices.py   the same metrics per template, magnitude pair and sign pattern
    gates.py    the milestone gates as a declarative table
    plots.py    training curves and accuracy by slice (PNG)
    report.py   the JSON report, its Markdown, and ``evaluate_files`` (``exe-coder evaluate``)
"""
