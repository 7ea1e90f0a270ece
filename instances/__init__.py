"""Bundled benchmark instances (data package; see rcprune.matrix.library)."""
