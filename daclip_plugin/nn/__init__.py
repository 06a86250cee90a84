"""The networks: DA-CLIP on open_clip and the conditional UNet, with their architectures.

Imports torch, open_clip and :mod:`daclip_plugin.errors` only.
"""
