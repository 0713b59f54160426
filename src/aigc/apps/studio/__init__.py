"""AIGC studio: typed prompt templates (built-in files and users' own) that guide the model."""
