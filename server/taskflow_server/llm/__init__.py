"""The LLM layer: the OpenRouter client, the offline extractive summarizer, the provider both
hide behind, the OpenRouter monitor, and a fake OpenRouter server for tests and demos.
"""
