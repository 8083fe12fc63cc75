"""The small contract shared by the importer, the upload proxy and the controller.

Names of environment variables, annotations and labels, the termination report
schema and its reason enum. Nothing here does I/O; every component may import it,
and it imports none of them.
"""
