"""The shipped analyses against values computed by hand on tiny inputs (no I/O)."""
from __future__ import annotations

import math

import pytest

from analysisstore.analyses import EchemStability, IcpmsCalibration, UvvisAbsorbance
from analysisstore.analyses._numerics import first_crossing, moving_average
from analysisstore.drivers.analysis import AnalysisInput

HC = 1239.84193


def _input(**streams):
    header = {"uid": "acq-1", "time": 1.0, "provenance": {"analysis_name": "acquisition"},
              "technique_name": "T", "sample": "S"}
    return AnalysisInput(header, {k: {} for k in streams}, {k: [{"data": row} for row in rows]
                                                              for k, rows in streams.items()})


def _run(cls, params=None, **streams):
    analysis = cls([_input(**streams)], params)
    analysis.run()
    return analysis.outputs


UVVIS = {"wavelength": [400.0, 500.0, 600.0], "dark": [10.0, 10.0, 10.0], "reference": [110.0, 110.0, 110.0],
         "sample": [20.0, 60.0, 110.0]}


def test_uvvis_transmission_absorbance_and_edge():
    """T = (S-D)/(R-D) = 0.1, 0.5, 1; A = 1, log10 2, 0; edge where A_norm = 0.5, interpolated in energy."""
    out = _run(UvvisAbsorbance, spectra=[UVVIS])
    (spectrum,) = out["absorbance"]
    assert spectrum["transmission"] == pytest.approx([0.1, 0.5, 1.0])
    assert spectrum["absorbance"] == pytest.approx([1.0, math.log10(2), 0.0])
    assert spectrum["absorbance_norm"] == pytest.approx([1.0, math.log10(2), 0.0])
    e400, e500 = HC / 400, HC / 500
    expected_edge = e500 + (0.5 - math.log10(2)) * (e400 - e500) / (1 - math.log10(2))
    (merit,) = out["figures_of_merit"]
    assert merit["edge_energy_ev"] == pytest.approx(expected_edge)
    assert merit["max_absorbance"] == pytest.approx(1.0)


def test_uvvis_smoothing_and_clipping():
    """A 3-point moving average shrinks at the ends; sample below dark clips T to t_min (A = 4)."""
    out = _run(UvvisAbsorbance, {"smooth": 3}, spectra=[UVVIS])
    a = [1.0, math.log10(2), 0.0]
    assert out["absorbance"][0]["absorbance_smooth"] == pytest.approx(
        [(a[0] + a[1]) / 2, sum(a) / 3, (a[1] + a[2]) / 2])
    dark_sample = dict(UVVIS, sample=[5.0, 60.0, 110.0])
    assert _run(UvvisAbsorbance, spectra=[dark_sample])["absorbance"][0]["absorbance"][0] == pytest.approx(4.0)


def test_uvvis_refuses_reference_below_dark():
    """A reference at or below dark is an error, not a division by zero."""
    with pytest.raises(ValueError, match="reference"):
        _run(UvvisAbsorbance, spectra=[dict(UVVIS, reference=[10.0, 110.0, 110.0])])


def test_echem_stability_ratios_per_bin():
    """Two bins [400,550) and [550,700]; means 90/100 and 120/200 → ratios 0.9, 0.6; below 0.9 at t=10."""
    out = _run(EchemStability, {"bins": 2, "threshold": 0.9},
               baseline=[{"wavelength": [400.0, 500.0, 600.0, 700.0], "signal": [100.0, 100.0, 200.0, 200.0]}],
               insitu=[{"t": 10.0, "signal": [90.0, 90.0, 100.0, 140.0]},
                       {"t": 0.0, "signal": [100.0, 100.0, 200.0, 200.0]}])
    first, second = out["ratios"]
    assert first["t"] == 0.0 and first["ratio"] == pytest.approx([1.0, 1.0]) and first["stability"] == 1.0
    assert second["ratio"] == pytest.approx([0.9, 0.6]) and second["stability"] == pytest.approx(0.6)
    assert first["bin_centres"] == pytest.approx([475.0, 625.0])
    assert out["summary"] == [{"min_stability": pytest.approx(0.6), "t_below_threshold": 10.0}]


def test_icpms_calibration_fit_quality_and_concentrations():
    """Fe: perfect line 1000·c + 100; Ni: least squares by hand (slope 47.5, intercept 58.33, R² 0.99908)."""
    out = _run(
        IcpmsCalibration,
        standards=[{"element": "Fe", "concentration": c, "counts": n} for c, n in ((0, 100), (1, 1100), (2, 2100))]
        + [{"element": "Ni", "concentration": c, "counts": n} for c, n in ((0, 50), (10, 550), (20, 1000))],
        blanks=[{"element": "Fe", "counts": n} for n in (100, 104, 96)],
        samples=[{"sample": "x", "element": "Fe", "counts": 600}, {"sample": "x", "element": "Ni", "counts": 295.8333333}],
    )
    fe, ni = out["calibration"]
    assert (fe["element"], fe["slope"], fe["intercept"], fe["r2"]) == ("Fe", pytest.approx(1000), pytest.approx(100),
                                                                       pytest.approx(1.0))
    assert fe["lod"] == pytest.approx(3 * 4 / 1000)  # sd of 100, 104, 96 is 4
    assert ni["slope"] == pytest.approx(47.5) and ni["intercept"] == pytest.approx(175 / 3)
    assert ni["r2"] == pytest.approx(1 - (1250 / 3) / (1355000 / 3)) and ni["lod"] is None
    concentrations = {r["element"]: r["concentration"] for r in out["concentrations"]}
    assert concentrations == {"Fe": pytest.approx(0.5), "Ni": pytest.approx(5.0)}


def test_icpms_min_r2_and_missing_calibration():
    """A fit below min_r2, or a sample of an uncalibrated element, is an error naming it."""
    standards = [{"element": "Ni", "concentration": c, "counts": n} for c, n in ((0, 50), (10, 550), (20, 1000))]
    with pytest.raises(ValueError, match="Ni: calibration R"):
        _run(IcpmsCalibration, {"min_r2": 0.9999}, standards=standards, samples=[])
    with pytest.raises(ValueError, match="Cu"):
        _run(IcpmsCalibration, standards=standards, samples=[{"sample": "y", "element": "Cu", "counts": 1}])


def test_helpers():
    """moving_average keeps length and shrinks at the ends; first_crossing interpolates."""
    import numpy as np

    assert moving_average(np.array([3.0, 6.0, 9.0, 12.0]), 3) == pytest.approx([4.5, 6.0, 9.0, 10.5])
    assert first_crossing(np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.2, 1.0]), 0.6) == pytest.approx(1.5)
    assert first_crossing(np.array([0.0, 1.0]), np.array([0.0, 0.1]), 0.6) is None
    with pytest.raises(ValueError, match="odd"):
        moving_average(np.array([1.0]), 2)


def test_inputs_from_a_local_bundle(tmp_path):
    """An analysis can read its input from a bundle on disk (no service), with the same result."""
    from analysisstore.client.bundle import BundleWriter, zip_bundle

    header = {"uid": "acq-local", "time": 1.0, "provenance": {"analysis_name": "acquisition"}}
    stream = {"uid": "s-local", "time": 1.0, "analysis_header": "acq-local", "name": "spectra",
              "data_keys": {k: {"dtype": "array"} for k in UVVIS}}
    writer = BundleWriter(tmp_path / "b")
    writer.write_header(header)
    writer.write_stream(stream)
    writer.append_records("s-local", [{"uid": "r0", "time": 1.0, "data_reference_header": "s-local",
                                       "data": UVVIS, "timestamps": {}}])
    writer.finish()
    zip_bundle(tmp_path / "b", tmp_path / "b.zip")
    from analysisstore.drivers.analysis import AnalysisInput

    local = AnalysisInput.from_bundle(tmp_path / "b.zip")
    analysis = UvvisAbsorbance([local])
    analysis.run()
    assert analysis.outputs["absorbance"][0]["transmission"] == pytest.approx([0.1, 0.5, 1.0])
    assert analysis.inputs[0].uid == "acq-local"
