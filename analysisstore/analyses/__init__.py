"""Analyses as code: the base classes (``base``) and the analyses shipped with analysisstore, by name
(``analysisstore analyze NAME``)."""
from __future__ import annotations

from .base import AnalysisInput, BaseAnalysis
from .echem import EchemStability
from .icpms import IcpmsCalibration
from .uvvis import UvvisAbsorbance

__all__ = ["ANALYSES", "AnalysisInput", "BaseAnalysis", "EchemStability", "IcpmsCalibration", "UvvisAbsorbance"]

ANALYSES: dict[str, type[BaseAnalysis]] = {
    cls.analysis_name: cls for cls in (UvvisAbsorbance, EchemStability, IcpmsCalibration)
}
