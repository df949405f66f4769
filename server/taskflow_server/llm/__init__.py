"""The LLM layer: the OpenRouter client, the offline extractive summarizer, the provider both
hide behind, and the OpenRouter monitor. (The fake OpenRouter server for tests and demos is
:mod:`taskflow_server.testing.openrouter`.)
"""
