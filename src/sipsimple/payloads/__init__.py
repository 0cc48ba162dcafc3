"""Payloads the SDK exchanges inside SIP and MSRP: Message/CPIM envelopes and XML
documents (is-composing, and the presence documents: PIDF, RPID, resource lists, ...).

Each module parses bytes into plain objects and builds bytes from them, raising its
own ValueError subclass for malformed input.
"""
