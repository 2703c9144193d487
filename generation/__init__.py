"""The product's core: request model, settings, MusicGen loading and generation, audio.

Knows nothing of Azure Functions; storage and callbacks are separate adapters here.
"""
