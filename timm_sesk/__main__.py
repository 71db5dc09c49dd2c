import sys

from timm_sesk.cli import main

sys.exit(main())
