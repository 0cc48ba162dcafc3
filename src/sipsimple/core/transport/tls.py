"""The ssl contexts of the TLS transport (stdlib ssl; TLS 1.2 or newer)."""

from __future__ import annotations

import ssl

from sipsimple.core.transport.errors import TransportError, TransportFailure
from sipsimple.core.transport.settings import TransportSettings

__all__ = ["client_context", "server_context"]


def _load_chain(context: ssl.SSLContext, settings: TransportSettings) -> None:
    if settings.tls_cert_file is None:
        return
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_privkey_file)
    except (OSError, ssl.SSLError) as e:
        raise TransportError(
            TransportFailure.TLS_CONFIGURATION,
            f"cannot load {settings.tls_cert_file} / {settings.tls_privkey_file}: {e}",
        ) from e


def _load_ca(context: ssl.SSLContext, settings: TransportSettings) -> None:
    try:
        if settings.tls_ca_file is not None:
            context.load_verify_locations(cafile=settings.tls_ca_file)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    except (OSError, ssl.SSLError) as e:
        raise TransportError(
            TransportFailure.TLS_CONFIGURATION, f"cannot load {settings.tls_ca_file}: {e}"
        ) from e


def client_context(settings: TransportSettings) -> ssl.SSLContext:
    """For the connections we open: verifies the server when ``tls_verify_server`` is set
    (against ``tls_ca_file`` or the system store, name checked by the caller's server
    name) and shows our certificate when one is configured."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.tls_verify_server:
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        _load_ca(context, settings)
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    _load_chain(context, settings)
    return context


def server_context(settings: TransportSettings) -> ssl.SSLContext:
    """For the TLS listener: our certificate. Clients are not asked for one: SIP peers
    often show server-only certificates, which a request would turn into failures."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, settings)
    return context
