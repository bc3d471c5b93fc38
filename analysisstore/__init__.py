"""analysisstore: a provenance store for scientific data analysis.

The server lives in this package; the thin client is ``analysisstore.client``
and the shared JSON Schemas are ``analysisstore.schemas``. Importing this
package imports nothing heavy, so the client stays thin.
"""
from ._version import __version__

__all__ = ["__version__"]
