"""L7 traffic management: pure, synchronous per-request decision cores.

One module per concern (h11 style): ``request`` (the request view),
``match`` (route matching, path normalisation, header modifiers), ``split``
(weighted picks), ``balance`` (load-balancer policies), ``retry`` (retry
policy, backoff, budget, route deadline), ``breaker`` (circuit breakers),
``outlier`` (passive health / ejection), ``fault`` (fault injection),
``mirror`` (shadow traffic) and ``decide`` (match -> split -> target ->
endpoint in one record). No I/O: the clock and a seeded ``random.Random``
are passed in by the driver.
"""
