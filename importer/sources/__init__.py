"""Where image bytes come from. A source delivers bytes and metadata; it reads no environment."""
