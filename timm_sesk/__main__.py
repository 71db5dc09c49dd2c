"""``python -m timm_sesk``: the command line, ``timm_sesk.cli.main``."""
import sys

try:
    from timm_sesk.cli import main
except KeyboardInterrupt:  # Ctrl-C while the command's modules load: end as main ends when interrupted
    sys.exit(130)

sys.exit(main())
