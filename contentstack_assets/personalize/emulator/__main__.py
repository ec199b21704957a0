"""`python -m contentstack_assets.personalize.emulator`: the same command line as
`python -m contentstack_assets.emulator` (cli.py)."""

from contentstack_assets.personalize.emulator.cli import main

if __name__ == "__main__":
    main()
