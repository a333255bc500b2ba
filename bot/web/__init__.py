"""The HTTP side of `serve`: the simulator, /health, the admin API and the built-in ticket backend."""
