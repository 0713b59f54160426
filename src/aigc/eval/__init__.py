"""Evaluation: perplexity, classification, generation metrics, poem forms."""
