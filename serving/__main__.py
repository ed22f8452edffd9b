"""`python -m serving FLAGS...` runs the model server (same flags as `lenspipe serve`)."""
import sys

from serving.cli import serve_main

if __name__ == "__main__":
    sys.exit(serve_main(sys.argv[1:]))
