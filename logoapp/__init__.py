from .config import Settings
__version__ = "0.1.0"
