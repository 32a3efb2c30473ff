"""dockyard's benchmarks: each measures dockyard side by side with a baseline in one run."""
