"""Where image bytes come from. Each source delivers bytes and metadata, and reads no environment."""
