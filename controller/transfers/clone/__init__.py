"""Clone (strategy copy): a source pod streams the source PVC to the target's upload server."""
