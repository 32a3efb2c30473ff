"""dockyard's offline images: pure recipes (:mod:`.recipes`) and the builder (:mod:`.builder`).

Nothing can be pulled on the machines dockyard targets, so images are built from Debian
packages with debootstrap and imported into the host engine.
"""
