"""sipsimple: a SIP SIMPLE client SDK in pure Python (asyncio)."""

__version__ = "0.1.0"
