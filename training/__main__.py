"""`python -m training MANIFEST [--store URL] [--only SIZE/SEED] ...`: the same as `zoo train`,
as a module so that launchers (torchrun, schedulers) can start it without the console script."""
import sys

from zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
