"""``python -m timm_sesk``: the command line, ``timm_sesk.cli.main``."""
import sys

from timm_sesk.cli import main

sys.exit(main())
