"""The client swarm (``msstorm-client``): processes of lean connections that answer pokes."""
