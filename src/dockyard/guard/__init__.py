"""The guard: an Engine API proxy that reads every request the way dockerd does.

The decision core is pure: :mod:`.gojson` (bodies decoded as Go's encoding/json decodes them),
:mod:`.request` (method and target routed as dockerd's mux routes them), :mod:`.framing`
(whether the bytes can be read exactly as dockerd would read them) and :mod:`.policy`
(profiles and verdicts). Sockets live elsewhere.
"""
