"""``BaseAnalysis``: one analysis as code, inputs and parameters in; the documents of one bundle out.

Subclasses set ``analysis_name``, ``output_keys`` (stream → data_keys) and
``default_params``, and implement ``calc_output(inputs)``. The
``analysis_uuid`` is deterministic — uuid5 over the canonical JSON of name,
parameters, input uids (as strings) and the code hash — so re-running the
same code on the same inputs is recognised, and every document it writes
has a deterministic uid, which makes a retried write harmless.
"""
from __future__ import annotations

import getpass
import hashlib
import inspect
import json
import platform
import socket
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

from .._version import __version__

__all__ = ["BaseAnalysis", "AnalysisInput", "NAMESPACE", "canonical_json", "code_hash"]

#: The uuid5 namespace of analysisstore analyses.
NAMESPACE = uuid.UUID("6f3c2b1e-8d4a-5e7f-9a0b-1c2d3e4f5a6b")


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no spaces, uuids and other objects as strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, allow_nan=False)


def code_hash(cls: type) -> str:
    """sha256 of the source of the module defining ``cls`` (no git needed)."""
    module = sys.modules[cls.__module__]
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):  # e.g. defined interactively: fall back to the class alone
        source = inspect.getsource(cls)
    return hashlib.sha256(source.encode()).hexdigest()


@dataclass
class AnalysisInput:
    """What an analysis reads: an earlier analysis (header, streams) and its records by stream name."""

    header: dict[str, Any]
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def uid(self) -> str:
        return str(self.header["uid"])

    @classmethod
    def from_bundle(cls, path: Any) -> "AnalysisInput":
        """An input read from a local bundle directory or ``.zip`` (validated first), no service needed."""
        from ..client.bundle import read_bundle

        (bundle,) = read_bundle(path)
        with bundle:
            bundle.validate()
            streams = {s.get("name") or s["uid"]: s for s in bundle.streams}
            records = {name: list(bundle.records(s["uid"])) for name, s in streams.items()}
            return cls(bundle.header, streams, records)

    def data(self, stream: str) -> list[dict[str, Any]]:
        """The ``data`` of every record of one stream, in order."""
        try:
            return [r["data"] for r in self.records[stream]]
        except KeyError:
            raise ValueError(f"input {self.uid} has no stream {stream!r}; it has {sorted(self.records)}") from None


class BaseAnalysis:
    """An analysis of some inputs with some parameters, by some code."""

    analysis_name: ClassVar[str] = "base"
    #: Output stream name → its data_keys (as in data_reference_header).
    output_keys: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    default_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, inputs: Sequence[AnalysisInput] = (), params: Mapping[str, Any] | None = None) -> None:
        self.inputs = list(inputs)
        self.analysis_params: dict[str, Any] = self.checked_params(params)
        self.analysis_codehash = code_hash(type(self))
        self.analysis_timestamp = time.time()
        self.outputs: dict[str, list[dict[str, Any]]] = {}
        self._stored_header: dict[str, Any] | None = None

    @classmethod
    def checked_params(cls, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The default parameters updated with ``params``; ValueError naming any this analysis does not take."""
        unknown = set(params or {}) - set(cls.default_params)
        if unknown:
            raise ValueError(f"{cls.analysis_name} has no parameters {sorted(unknown)}; "
                             f"it takes {sorted(cls.default_params)}")
        return {**cls.default_params, **(params or {})}

    # ---- identity -----------------------------------------------------------------

    @classmethod
    def uuid_for(cls, input_uids: Sequence[Any], params: Mapping[str, Any] | None = None) -> str:
        """The uuid an analysis of these inputs with these parameters will have (for skipping re-runs)."""
        merged = {**cls.default_params, **(params or {})}
        key = {"name": cls.analysis_name, "params": merged, "inputs": sorted(str(u) for u in input_uids),
               "codehash": code_hash(cls)}
        return str(uuid.uuid5(NAMESPACE, canonical_json(key)))

    @property
    def analysis_uuid(self) -> str:
        return self.uuid_for([i.uid for i in self.inputs], self.analysis_params)

    @property
    def _first(self) -> dict[str, Any]:
        return self.inputs[0].header if self.inputs else {}

    @property
    def process_uuid(self) -> str | None:
        """The process (measurement) the first input came from."""
        return self._first.get("process_uuid") or self._first.get("uid")

    @property
    def process_name(self) -> str | None:
        return self._first.get("process_name") or self._first.get("provenance", {}).get("analysis_name")

    @property
    def process_timestamp(self) -> float | None:
        return self._first.get("process_timestamp") or self._first.get("time")

    @property
    def technique_name(self) -> str | None:
        return self._first.get("technique_name")

    @property
    def run_type(self) -> str | None:
        return self._first.get("run_type")

    # ---- work -----------------------------------------------------------------------

    def calc_output(self) -> dict[str, list[dict[str, Any]]]:
        """Compute the output records, by stream name. Subclasses implement this."""
        raise NotImplementedError

    def run(self) -> None:
        """Compute and keep the outputs (checked against ``output_keys``)."""
        outputs = self.calc_output()
        for stream, rows in outputs.items():
            if stream not in self.output_keys:
                raise ValueError(f"{self.analysis_name} produced undeclared stream {stream!r}")
            declared = self.output_keys[stream]
            for row in rows:
                extra = set(row) - set(declared)
                if extra:
                    raise ValueError(f"{self.analysis_name} stream {stream!r} produced undeclared keys {sorted(extra)}")
        self.outputs = outputs

    # ---- documents --------------------------------------------------------------------

    def _provenance(self) -> dict[str, Any]:
        return {
            "analysis_name": self.analysis_name,
            "analysis_params": self.analysis_params,
            "analysis_codehash": self.analysis_codehash,
            "inputs": [i.uid for i in self.inputs],
            "software": {"analysisstore": __version__, "python": platform.python_version(),
                         "numpy": _numpy_version()},
            "host": socket.gethostname(),
            "user": _user(),
        }

    def adopt(self, stored_header: Mapping[str, Any]) -> None:
        """Continue this analysis from its stored header (it was interrupted before its tail).

        The stored header and its time are reused, and streams and records
        take their times from it, so every document re-sent is identical to
        any copy the interrupted run stored ("already stored", not a conflict).
        """
        if stored_header.get("uid") != self.analysis_uuid:
            raise ValueError(f"header {stored_header.get('uid')!r} is not the one of analysis {self.analysis_uuid}")
        self._stored_header = {k: v for k, v in stored_header.items() if not k.startswith("_")}
        self.analysis_timestamp = float(stored_header["time"])

    def header_doc(self) -> dict[str, Any]:
        if self._stored_header is not None:
            return dict(self._stored_header)
        header = {"uid": self.analysis_uuid, "time": self.analysis_timestamp, "provenance": self._provenance(),
                  "process_uuid": self.process_uuid, "process_name": self.process_name,
                  "process_timestamp": self.process_timestamp, "technique_name": self.technique_name,
                  "run_type": self.run_type}
        for key in ("sample", "project"):
            if key in self._first:
                header[key] = self._first[key]
        return {k: v for k, v in header.items() if v is not None}

    def _uid(self, *parts: Any) -> str:
        return str(uuid.uuid5(uuid.UUID(self.analysis_uuid), "/".join(str(p) for p in parts)))

    def export_analysis(self, exit_status: str = "success", reason: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The documents of one bundle, in writing order: header, streams, records, tail."""
        header = self.header_doc()
        docs: list[tuple[str, dict[str, Any]]] = [("analysis_header", header)]
        # Streams and records carry the analysis's own time: a re-run that completes an interrupted
        # analysis (see adopt) then re-sends exactly what the first run may have stored.
        now = self.analysis_timestamp
        if exit_status == "success":
            for stream, rows in self.outputs.items():
                stream_uid = self._uid("stream", stream)
                docs.append(("data_reference_header", {"uid": stream_uid, "time": now, "name": stream,
                                                       "analysis_header": header["uid"],
                                                       "data_keys": self.output_keys[stream]}))
                for seq, row in enumerate(rows):
                    docs.append(("data_reference", {"uid": self._uid("record", stream, seq), "time": now,
                                                    "seq_num": seq, "data_reference_header": stream_uid,
                                                    "data": row, "timestamps": {k: now for k in row}}))
        tail = {"uid": self._uid("tail"), "time": time.time(), "analysis_header": header["uid"],
                "exit_status": exit_status}
        if reason:
            tail["reason"] = reason[:4000]
        docs.append(("analysis_tail", tail))
        return docs

    def failure_reason(self, exc: BaseException) -> str:
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f" (at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
        return f"{type(exc).__name__}: {exc}{where}"


def _numpy_version() -> str | None:
    numpy = sys.modules.get("numpy")
    return getattr(numpy, "__version__", None)


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
