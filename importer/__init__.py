"""The data path: sources, decompression, format detection, safe inspection, conversion, sinks."""
