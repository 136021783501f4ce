"""The PinkCloudSync emulator, for demos and for testing code that uses this library."""
