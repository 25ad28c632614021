"""Guard against patient identifiers reaching the tracking server.

``ImageRecord.patient`` exists only for grouping splits; nothing the study logs (params,
tags, manifests, predictions, dataset entries) may carry it. The guard looks for
patient-like column / key names and for CBIS-DDSM patient ids (``P_00001``) in values.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

_PATIENT_KEY = re.compile(r"patient", re.IGNORECASE)
_DDSM_PATIENT_ID = re.compile(r"(?<![A-Za-z0-9])P_\d{5}(?![0-9])")


class PrivacyError(ValueError):
    """Something about to be logged holds a patient identifier."""


def _check_key(key: Any, where: str) -> None:
    if isinstance(key, str) and _PATIENT_KEY.search(key):
        raise PrivacyError(f"{where}: field {key!r} looks like a patient identifier; log image_id instead")


def _check_value(value: Any, where: str) -> None:
    if isinstance(value, str) and _DDSM_PATIENT_ID.search(value):
        raise PrivacyError(f"{where}: value {value[:80]!r} contains a patient id; use anonymous image ids")


def assert_no_patient_identifiers(obj: Any, where: str = "logged data") -> None:
    """Raise :class:`PrivacyError` if ``obj`` (mapping, sequence, DataFrame, str) names a patient.

    Checks mapping keys and DataFrame column names for ``patient``, and every string
    value for a CBIS-DDSM patient id.
    """
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(obj, pd.DataFrame):
        for col in obj.columns:
            _check_key(col, where)
        for col in obj.columns:
            series = obj[col]
            if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
                for value in series.dropna().astype(str):
                    _check_value(value, f"{where} column {col!r}")
        return
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            _check_key(key, where)
            _check_value(key, where)
            assert_no_patient_identifiers(value, f"{where}[{key!r}]")
        return
    if isinstance(obj, str):
        _check_value(obj, where)
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for item in obj:
            assert_no_patient_identifiers(item, where)
        return


def assert_no_patient_identifiers_in(items: Iterable[Any], where: str) -> None:
    """Apply :func:`assert_no_patient_identifiers` to every item."""
    for item in items:
        assert_no_patient_identifiers(item, where)
