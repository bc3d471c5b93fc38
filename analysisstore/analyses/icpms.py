"""ICP-MS-style calibration: counts of standards → a fitted line → concentrations of unknowns.

For every element, counts = slope · concentration + intercept is fitted by
least squares to the standards; fit quality is R². Unknowns get
concentration = (counts − intercept) / slope. With blanks, the limit of
detection is 3 · sd(blank counts) / slope.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import BaseAnalysis

__all__ = ["IcpmsCalibration"]


class IcpmsCalibration(BaseAnalysis):
    """Input streams ``standards`` (element, concentration, counts), ``samples`` (sample, element, counts),
    optionally ``blanks`` (element, counts)."""

    analysis_name = "icpms_calibration"
    default_params = {"min_r2": 0.0}
    output_keys = {
        "calibration": {
            "element": {"dtype": "string"},
            "slope": {"dtype": "number"},
            "intercept": {"dtype": "number"},
            "r2": {"dtype": "number"},
            "lod": {"dtype": "number"},
            "points": {"dtype": "integer"},
        },
        "concentrations": {
            "sample": {"dtype": "string"},
            "element": {"dtype": "string"},
            "counts": {"dtype": "number"},
            "concentration": {"dtype": "number"},
        },
    }

    def calc_output(self) -> dict[str, list[dict[str, Any]]]:
        (source,) = self.inputs
        standards = source.data("standards")
        blanks = source.data("blanks") if "blanks" in source.records else []
        fits: dict[str, tuple[float, float]] = {}
        calibration = []
        for element in sorted({s["element"] for s in standards}):
            points = [s for s in standards if s["element"] == element]
            conc = np.array([p["concentration"] for p in points], dtype=float)
            counts = np.array([p["counts"] for p in points], dtype=float)
            if np.unique(conc).size < 2:
                raise ValueError(f"{element}: a calibration needs standards at two or more concentrations")
            slope, intercept = np.polyfit(conc, counts, 1)
            residual = counts - (slope * conc + intercept)
            total = counts - counts.mean()
            r2 = 1.0 - float(residual @ residual) / float(total @ total) if float(total @ total) > 0 else 1.0
            if r2 < self.analysis_params["min_r2"]:
                raise ValueError(f"{element}: calibration R² {r2:.4f} is below min_r2 {self.analysis_params['min_r2']}")
            blank = np.array([b["counts"] for b in blanks if b["element"] == element], dtype=float)
            lod = float(3 * blank.std(ddof=1) / slope) if blank.size >= 2 else None
            fits[element] = (float(slope), float(intercept))
            calibration.append({"element": element, "slope": float(slope), "intercept": float(intercept),
                                "r2": r2, "lod": lod, "points": int(conc.size)})
        rows = []
        for sample in source.data("samples"):
            if sample["element"] not in fits:
                raise ValueError(f"sample {sample['sample']!r}: no calibration for {sample['element']!r}")
            slope, intercept = fits[sample["element"]]
            rows.append({"sample": sample["sample"], "element": sample["element"], "counts": float(sample["counts"]),
                         "concentration": (float(sample["counts"]) - intercept) / slope})
        return {"calibration": calibration, "concentrations": rows}
