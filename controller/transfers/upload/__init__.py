"""Upload: a per-PVC upload server pod the upload proxy streams a client's image into."""
