"""Import: an HTTP, S3, GCS or registry source (or blank) written by the importer pod."""
