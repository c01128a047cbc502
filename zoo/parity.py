"""The limits of every parity claim zoo makes, and the measures they apply to (../shared/DESIGN.md).

A candidate (a port, a deployed artefact, a training step) agrees with the reference when, for
every compared tensor, ``relative(candidate, reference) <= PARITY_LIMIT``: the largest difference
over the reference's largest magnitude, but at least 1, so that values near 0 are compared
absolutely (fp32, CPU; measured between the ports: 1e-7 to 4e-5). Gradients and momentum buffers
are small, so each is measured against its own largest value (``relative_to_peak``), within
``GRADIENT_LIMIT`` (measured: at most 4.5e-5 over the variants, 64 px, batch 4).
"""

from __future__ import annotations

PARITY_LIMIT = 1e-4
GRADIENT_LIMIT = 1e-3


def relative(candidate, reference) -> tuple[float, float]:
    """(max |d|, max |d| / max(1, max |reference|)) of two numpy arrays."""
    import numpy as np

    diff = float(np.abs(candidate - reference).max())
    return diff, diff / max(1.0, float(np.abs(reference).max()))


def relative_to_peak(candidate, reference) -> float:
    """max |d| / max |reference| of one tensor (its L-infinity norm; gradients, momentum buffers)."""
    import numpy as np

    peak = float(np.abs(reference).max()) if reference.size else 0.0
    diff = float(np.abs(candidate - reference).max()) if reference.size else 0.0
    if peak == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / peak
