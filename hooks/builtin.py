"""The built-in DA-CLIP restorer and classifier."""
