"""``python -m mtl_ehrnet`` runs the command line."""
import sys

from mtl_ehrnet.cli import main

if __name__ == "__main__":  # a spawned child process imports this module too
    sys.exit(main())
