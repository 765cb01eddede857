"""``python -m elmlib COMMAND ...`` (also installed as ``elmlib``): `elmlib.pipeline.cli`."""
import sys

from elmlib.pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
