"""Writing structures to files (biotite is imported lazily, inside the writers)."""
