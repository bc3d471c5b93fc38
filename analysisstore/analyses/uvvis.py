"""UV-Vis: dark and reference spectra → transmission and absorbance, smoothed, normalised, absorption edge.

T = (S − D) / (R − D), clipped to [t_min, 1]; A = −log10 T; A smoothed by a
centred moving average; A_norm = (A − min A) / (max A − min A). The figure of
merit is the absorption-edge energy: photon energy E = hc/λ (1239.84193 eV·nm
/ λ), and the lowest E at which A_norm reaches ``edge_level`` (linear
interpolation) — a band-gap-style estimate.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import BaseAnalysis
from ._numerics import first_crossing, moving_average

__all__ = ["UvvisAbsorbance", "HC_EV_NM"]

HC_EV_NM = 1239.84193


class UvvisAbsorbance(BaseAnalysis):
    """Input stream ``spectra`` with array keys ``wavelength`` (nm), ``dark``, ``reference``, ``sample``."""

    analysis_name = "uvvis_absorbance"
    default_params = {"smooth": 1, "t_min": 1e-4, "edge_level": 0.5}
    output_keys = {
        "absorbance": {
            "wavelength": {"dtype": "array", "units": "nm"},
            "transmission": {"dtype": "array"},
            "absorbance": {"dtype": "array"},
            "absorbance_smooth": {"dtype": "array"},
            "absorbance_norm": {"dtype": "array"},
        },
        "figures_of_merit": {
            "edge_energy_ev": {"dtype": "number", "units": "eV"},
            "max_absorbance": {"dtype": "number"},
        },
    }

    def calc_output(self) -> dict[str, list[dict[str, Any]]]:
        (source,) = self.inputs
        spectra, merits = [], []
        for row in source.data("spectra"):
            wavelength = np.asarray(row["wavelength"], dtype=float)
            dark, reference, sample = (np.asarray(row[k], dtype=float) for k in ("dark", "reference", "sample"))
            span = reference - dark
            if np.any(span <= 0):
                raise ValueError("reference must exceed dark at every wavelength")
            transmission = np.clip((sample - dark) / span, self.analysis_params["t_min"], 1.0)
            absorbance = -np.log10(transmission)
            smooth = moving_average(absorbance, int(self.analysis_params["smooth"]))
            low, high = smooth.min(), smooth.max()
            norm = (smooth - low) / (high - low) if high > low else np.zeros_like(smooth)
            energy = HC_EV_NM / wavelength
            order = np.argsort(energy)
            edge = first_crossing(energy[order], norm[order], float(self.analysis_params["edge_level"]))
            spectra.append({"wavelength": wavelength.tolist(), "transmission": transmission.tolist(),
                            "absorbance": absorbance.tolist(), "absorbance_smooth": smooth.tolist(),
                            "absorbance_norm": norm.tolist()})
            merits.append({"edge_energy_ev": edge, "max_absorbance": float(absorbance.max())})
        return {"absorbance": spectra, "figures_of_merit": merits}
