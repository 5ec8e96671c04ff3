"""Many workers acting as one server: the bus between them, who is alive, the supervisor."""
