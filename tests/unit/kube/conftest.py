"""Shared by the Kubernetes manifest tests."""

from __future__ import annotations

import json
from typing import Any

import pytest


@pytest.fixture
def roundtrip():
    return _roundtrip


def _roundtrip(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """Deserialize into the client's model and back: an unknown or misspelt field is dropped
    on the way, so the result differs from the input."""
    from kubernetes.client import ApiClient

    api = ApiClient()
    model = api.deserialize(json.dumps(obj), kind, "application/json")
    return api.sanitize_for_serialization(model)  # type: ignore[no-any-return]
