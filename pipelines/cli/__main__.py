"""`python -m pipelines.cli` (and `torchrun -m pipelines.cli`): the `hm3` command line."""

from pipelines.cli import main

if __name__ == "__main__":
    main()
