"""The inference engine shared by every learned command (see docs/ARCHITECTURE.md)."""
