"""aigc: from raw text to your own ChatGPT-style assistant."""

__version__ = "0.1.0"
