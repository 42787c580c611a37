"""Obtaining checkpoint files: cache locations, integrity checks, Hub downloads and local mirrors."""
