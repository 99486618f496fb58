"""aoai-stream-proxy: a transparent, instrumented reverse proxy for Azure OpenAI."""

__version__ = "0.1.0"
