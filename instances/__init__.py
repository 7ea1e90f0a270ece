"""Bundled benchmark instances (data package; see rcprune.library)."""
