"""Model weights shipped inside the package (one subpackage per embedded model; no code)."""
