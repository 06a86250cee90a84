"""Built-in plugins of daclip-plugin, registered exactly like third-party ones."""
