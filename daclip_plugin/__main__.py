"""``python -m daclip_plugin`` runs the ``daclip`` command."""

import sys

from .cli import main

sys.exit(main())
