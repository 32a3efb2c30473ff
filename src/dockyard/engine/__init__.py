"""Engines: Docker-in-Docker daemons with mutual TLS, readiness, a cache volume and MTU."""
