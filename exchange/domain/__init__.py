"""The pure, deterministic core.

Nothing in this package reads a clock, draws a random number, touches a file or socket, or uses a
float for money. Time and ids come in as inputs; replaying the same commands rebuilds the same state.
"""
