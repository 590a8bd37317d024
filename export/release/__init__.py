"""The release and its verification: a bundle with its model card's claims, and ``dapter-verify``.

``release`` and ``verify`` are the binaries; ``card`` and ``claims`` write the model card and read it
back; ``release_lib`` builds and checks a bundle. The release carries no target or attack code (only
``verify --attacks`` re-runs an attack).
"""
