"""FS-GEN analyses from trace files and FS-GEN record files.

- :mod:`.samples`: load both formats into :class:`~.samples.Sample` (format detected per line).
- :mod:`.collab`: collaboration frequency, large-call ratio, mismatch ratio.
- :mod:`.position`: relative position of mismatches in 10 % bins.
- :mod:`.uncertainty`: entropy / max prob / margin at match vs mismatch steps, ROC AUC per statistic.
- :mod:`.scaling`: ``CF = b - a * r**(-alpha)`` fit.

Plots use matplotlib's Agg backend and are imported lazily.
"""
from .samples import Sample, group_samples, load_samples  # noqa: F401
from .scaling import ScalingFit, ScalingRow, fit_scaling_law, load_rows, parse_size  # noqa: F401
