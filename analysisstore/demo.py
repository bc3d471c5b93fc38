"""``analysisstore demo``: synthetic measurements → acquisition analyses → the shipped analyses.

Everything goes through the client, like a facility's own scripts would. The
acquisitions get uids derived from the seed, so running the demo again finds
them stored and adds nothing (the analyses are skipped by their own
deterministic uids).
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Callable

import numpy as np

from .analyses import EchemStability, IcpmsCalibration, UvvisAbsorbance
from .client import AnalysisClient
from .drivers.driver import AnalysisDriver, AnalysisTask, DriverReport

__all__ = ["run_demo", "acquire_uvvis", "acquire_echem", "acquire_icpms", "acquisition_uid"]

log = logging.getLogger(__name__)

PROJECT = "demo"
_UID_NAMESPACE = uuid.UUID("6f1f0c3e-5b7a-4c59-9a8e-2f4d1c0b7e21")


def acquisition_uid(seed: int, technique: str, sample: str) -> str:
    """The demo acquisition's uid: the same seed, technique and sample always give the same uid."""
    return str(uuid.uuid5(_UID_NAMESPACE, f"demo/{seed}/{technique}/{sample}"))


def _acquisition(client: AnalysisClient, technique: str, sample: str, streams: dict[str, tuple[dict, list[dict]]],
                 uid: str | None = None) -> str:
    if uid is not None and client.find_analysis_header(uid=uid, limit=1):
        log.info("demo acquisition %s (%s, %s) is already stored", uid, technique, sample)
        return uid
    header = client.insert_analysis_header(
        uid=uid or str(uuid.uuid4()), provenance={"analysis_name": "acquisition", "instrument": technique},
        technique_name=technique, run_type="measurement", sample=sample, project=PROJECT)
    for name, (keys, rows) in streams.items():
        stream = client.insert_data_reference_header(header, data_keys=keys, name=name)
        client.insert_bulk_data_reference(stream, [{"data": row, "timestamps": {}, "seq_num": i}
                                                   for i, row in enumerate(rows)])
    client.insert_analysis_tail(header, exit_status="success")
    return header


def acquire_uvvis(client: AnalysisClient, sample: str, edge_nm: float, rng: np.random.Generator,
                  uid: str | None = None) -> str:
    """A UV-Vis measurement of a film whose absorption edge sits near ``edge_nm``."""
    wavelength = np.arange(300.0, 805.0, 5.0)
    dark = 100.0 + rng.normal(0, 1.0, wavelength.size)
    reference = 1100.0 + rng.normal(0, 2.0, wavelength.size)
    transmission = 0.05 + 0.9 / (1 + np.exp(-(wavelength - edge_nm) / 12.0))
    sample_counts = dark + transmission * (reference - dark) + rng.normal(0, 2.0, wavelength.size)
    keys = {k: {"dtype": "array", "shape": [int(wavelength.size)]} for k in ("wavelength", "dark", "reference", "sample")}
    row = {"wavelength": wavelength, "dark": dark, "reference": reference, "sample": sample_counts}
    return _acquisition(client, "UVVIS", sample, {"spectra": (keys, [row])}, uid)


def acquire_echem(client: AnalysisClient, sample: str, rng: np.random.Generator, uid: str | None = None) -> str:
    """Baseline and in-situ spectra during electrochemical cycling; the red end degrades over time."""
    wavelength = np.arange(400.0, 700.0, 10.0)
    base = 1000.0 + rng.normal(0, 5.0, wavelength.size)
    insitu = []
    for t in np.arange(0.0, 600.0, 60.0):
        fade = 1 - 0.0004 * t * (wavelength - 400) / 300
        insitu.append({"t": t, "signal": base * fade + rng.normal(0, 2.0, wavelength.size)})
    return _acquisition(client, "ECHEM-OPTICAL", sample, {
        "baseline": ({"wavelength": {"dtype": "array", "units": "nm"}, "signal": {"dtype": "array"}},
                     [{"wavelength": wavelength, "signal": base}]),
        "insitu": ({"t": {"dtype": "number", "units": "s"}, "signal": {"dtype": "array"}}, insitu),
    }, uid)


def acquire_icpms(client: AnalysisClient, rng: np.random.Generator, uid: str | None = None) -> str:
    """Calibration standards, blanks and three unknown samples for Fe and Ni."""
    response = {"Fe": (1520.0, 80.0), "Ni": (980.0, 40.0)}
    standards, blanks, samples = [], [], []
    for element, (slope, intercept) in response.items():
        for conc in (0.0, 1.0, 5.0, 10.0, 20.0):
            standards.append({"element": element, "concentration": conc,
                              "counts": slope * conc + intercept + rng.normal(0, 15.0)})
        blanks += [{"element": element, "counts": intercept + rng.normal(0, 6.0)} for _ in range(5)]
        for name, true in (("leachate-1", 2.5), ("leachate-2", 7.0), ("leachate-3", 12.5)):
            samples.append({"sample": name, "element": element, "counts": slope * true + intercept + rng.normal(0, 15)})
    number = {"dtype": "number"}
    return _acquisition(client, "ICPMS", "leachates", {
        "standards": ({"element": {"dtype": "string"}, "concentration": number, "counts": number}, standards),
        "blanks": ({"element": {"dtype": "string"}, "counts": number}, blanks),
        "samples": ({"sample": {"dtype": "string"}, "element": {"dtype": "string"}, "counts": number}, samples),
    }, uid)


def run_demo(client_factory: Callable[[], AnalysisClient], seed: int = 0,
             progress_bar: bool | None = None) -> tuple[dict[str, Any], DriverReport]:
    """Ingest synthetic measurements, analyse them, return the acquisitions and the driver's report."""
    client = client_factory()
    rng = np.random.default_rng(seed)
    films = {"film-A": 420.0, "film-B": 505.0, "film-C": 610.0}
    acquired = {"uvvis": [acquire_uvvis(client, s, edge, rng, acquisition_uid(seed, "UVVIS", s))
                          for s, edge in films.items()],
                "echem": [acquire_echem(client, "film-B", rng, acquisition_uid(seed, "ECHEM-OPTICAL", "film-B"))],
                "icpms": [acquire_icpms(client, rng, acquisition_uid(seed, "ICPMS", "leachates"))]}
    driver = AnalysisDriver(client_factory, concurrency=2, progress_bar=progress_bar)
    for uid in acquired["uvvis"]:
        driver.submit(AnalysisTask(UvvisAbsorbance, [uid], {"smooth": 5}))
    driver.submit(AnalysisTask(EchemStability, acquired["echem"], {"bins": 6}), priority=1)
    driver.submit(AnalysisTask(IcpmsCalibration, acquired["icpms"], {"min_r2": 0.99}), priority=1)
    return acquired, driver.run()
