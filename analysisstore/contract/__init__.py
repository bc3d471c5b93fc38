"""The contract client and service share (as ``analysisstore.schemas`` shares the schemas).

Imported by both sides, it imports neither: no tornado, pymongo or bson
(the service's code), no requests (the client's). A test holds it to that.

- :mod:`.vocabulary` — lookup operators, reserved parameters, updatable types, request headers
- :mod:`.validation` — schema checks and the record-against-stream check
- :mod:`.codec` — JSON text as it travels (non-finite numbers tagged)
- :mod:`.bundle` — the bundle format: members, manifest, reader, writers, checks
"""
