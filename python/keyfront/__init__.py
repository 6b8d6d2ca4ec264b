"""keyfront from Python: `start_emulator()` runs `keyfront emulate` (the
binary this wheel installs), and the pytest plugin's `cloudfront` fixture
runs it for a test session."""

from .emulator import Emulator, start_emulator

__all__ = ["Emulator", "start_emulator"]
