"""pytest fixtures giving a test an emulator and a client wired to it (see the README)."""
