"""`python -m mailbridge` runs the command line, like the `mailbridge` script."""

from mailbridge.cli.app import main

if __name__ == "__main__":
    main()
