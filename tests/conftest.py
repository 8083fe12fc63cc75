"""Shared test configuration.

Peers (nginx, the bad server, moto, the registry, the control plane) are pytest plugins
under tests/peers/ and hack/localcluster/; they are loaded here so every test can ask
for them as fixtures.
"""

import importlib.util

_PLUGINS = [
    "tests.peers.nginx",
    "tests.peers.badserver",
    "tests.peers.s3",
    "tests.peers.gcs",
    "tests.peers.registry",
    "tests.peers.virtctl",
    "tests.peers.snapshotcrds",
    "localcluster.pytest_plugin",
]


def _available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


pytest_plugins = [p for p in _PLUGINS if _available(p)]
