"""Tracing for the proxy's L7 path: header propagation, sampling, spans and exporters.

Pure cores (``propagation``, ``sampling``, ``spans``, ``formats``) and one thin
trio driver (``export``). Nothing here reads the wall clock or the global
random generator: callers pass a clock callable and a ``random.Random``.
"""
