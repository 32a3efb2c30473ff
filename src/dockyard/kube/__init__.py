"""Engines as Kubernetes pods: pure manifests (manifests.py) and a backend that applies them."""
