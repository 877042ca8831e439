"""Audit: how noisy are a dataset's own labels, and which ones are wrong?

A workflow beside :mod:`noisegrid.runner`: it loads data, trains cross-validated models, injects
noise at known rates to calibrate itself, and hands back an :class:`AuditResult`.

- ``run.py``: :func:`audit` (inputs, out-of-fold probabilities, confident learning, calibration);
- ``result.py``: :class:`AuditResult`, its text and files, and :func:`load_audit`.

The calibration figure is drawn by :mod:`noisegrid.report` (:func:`noisegrid.report.save_audit`).
"""

from .result import (
    DEFAULT_CALIBRATION_RATES,
    DEFAULT_SAMPLE,
    PRECISION_DEPTHS,
    AuditResult,
    load_audit,
)
from .run import audit

__all__ = [
    "DEFAULT_CALIBRATION_RATES",
    "DEFAULT_SAMPLE",
    "PRECISION_DEPTHS",
    "AuditResult",
    "audit",
    "load_audit",
]
