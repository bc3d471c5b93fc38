"""Electrochemical stability: how an in-situ optical signal holds up against its baseline, per wavelength bin.

The wavelengths are split into ``bins`` equal-width bins; in each bin the
mean in-situ signal at every time point is divided by the mean baseline
signal. The figure of merit per time point is the worst (lowest) bin ratio;
the analysis also reports the time at which it first drops below
``threshold`` (None if it never does).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import BaseAnalysis

__all__ = ["EchemStability"]


class EchemStability(BaseAnalysis):
    """Input streams ``baseline`` (one record: wavelength, signal) and ``insitu`` (records: t, signal)."""

    analysis_name = "echem_stability"
    default_params = {"bins": 4, "threshold": 0.9}
    output_keys = {
        "ratios": {
            "t": {"dtype": "number", "units": "s"},
            "bin_centres": {"dtype": "array", "units": "nm"},
            "ratio": {"dtype": "array"},
            "stability": {"dtype": "number"},
        },
        "summary": {
            "min_stability": {"dtype": "number"},
            "t_below_threshold": {"dtype": "number", "units": "s"},
        },
    }

    def calc_output(self) -> dict[str, list[dict[str, Any]]]:
        (source,) = self.inputs
        (baseline,) = source.data("baseline")
        wavelength = np.asarray(baseline["wavelength"], dtype=float)
        base = np.asarray(baseline["signal"], dtype=float)
        bins = int(self.analysis_params["bins"])
        if bins < 1 or bins > wavelength.size:
            raise ValueError(f"bins must be between 1 and the number of wavelengths ({wavelength.size})")
        edges = np.linspace(wavelength.min(), wavelength.max(), bins + 1)
        which = np.clip(np.searchsorted(edges, wavelength, side="right") - 1, 0, bins - 1)
        centres = (edges[:-1] + edges[1:]) / 2
        base_means = np.array([base[which == b].mean() for b in range(bins)])
        if np.any(base_means == 0):
            raise ValueError("a baseline bin has zero mean signal; ratios are undefined")
        rows, below = [], None
        for record in sorted(source.data("insitu"), key=lambda r: r["t"]):
            signal = np.asarray(record["signal"], dtype=float)
            ratio = np.array([signal[which == b].mean() for b in range(bins)]) / base_means
            stability = float(ratio.min())
            if below is None and stability < self.analysis_params["threshold"]:
                below = float(record["t"])
            rows.append({"t": float(record["t"]), "bin_centres": centres.tolist(), "ratio": ratio.tolist(),
                         "stability": stability})
        summary = {"min_stability": min(r["stability"] for r in rows) if rows else None,
                   "t_below_threshold": below}
        return {"ratios": rows, "summary": [summary]}
