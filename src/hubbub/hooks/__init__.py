"""What calls the user's backend: webhooks (signed, batched, retried) and the connect,
subscribe and publish proxies (spec 16.3, 16.4).

Each implements an interface the inner layers define (core's
:class:`~hubbub.core.events.EventSink` and :class:`~hubbub.core.authorizer.Authorizer`,
auth's :class:`~hubbub.auth.connect.ConnectProxy`) over one HTTP client
(:mod:`hubbub.hooks.http`, the only module here that imports aiohttp). Nothing in this
package is awaited by the realtime path except a proxy's own verdict.
"""
