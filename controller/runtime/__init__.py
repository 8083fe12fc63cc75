"""The controller's runtime: API client, informers, work queue, leader election, manager.

Nothing here knows DataVolumes or transfers (an import-linter contract keeps it so); the
domain (`controller.*` outside this package) plugs its keys, routing and reconcilers in.
"""
