"""``python -m mtl_ehrnet`` runs the command line."""
import sys

from mtl_ehrnet.cli import main

sys.exit(main())
