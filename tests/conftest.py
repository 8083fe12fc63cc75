"""Shared test configuration. Peers (nginx, registry, moto, the control plane) live in tests/peers/."""
