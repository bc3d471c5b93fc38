"""The former home of ``BaseAnalysis`` and ``AnalysisInput``, kept so existing subclasses import unchanged.

They live in :mod:`analysisstore.analyses.base`: analyses are code the
drivers run, not part of the drivers.
"""
from __future__ import annotations

from ..analyses.base import NAMESPACE, AnalysisInput, BaseAnalysis, canonical_json, code_hash

__all__ = ["BaseAnalysis", "AnalysisInput", "NAMESPACE", "canonical_json", "code_hash"]
