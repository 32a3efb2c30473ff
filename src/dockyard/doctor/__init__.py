"""``dockyard doctor``: what is wrong with a stack, seen from its CI container, cause and fix.

:mod:`~dockyard.doctor.gather` reads the world into plain :class:`~dockyard.doctor.checks.Facts`
(and never fails on a broken stack); :mod:`~dockyard.doctor.checks` turns facts into findings
with pure functions, so every failure is unit-tested without an engine.
"""
