"""Engine.IO v4 and Socket.IO v5 without I/O: packets, handshake rules, session state.

Nothing in this package opens a socket, reads a clock or logs: bytes and time
go in, events and bytes come out.
"""
