"""Server Manager."""
