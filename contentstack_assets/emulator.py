"""`python -m contentstack_assets.emulator` (or `contentstack-assets emulator`): the bundled Personalize emulator
(see personalize/emulator/)."""

from contentstack_assets.personalize.emulator import main

if __name__ == "__main__":
    main()
