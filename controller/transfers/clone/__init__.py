"""Clone: a source pod streams a PVC to an upload server on the target, or the storage copies it."""
