"""`infraplan status`: what the fleet does now, from the servers' own `/metrics` (`collect`)."""
