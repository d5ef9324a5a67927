"""How results are shown to people (rich, colour off when not a TTY); JSON views live beside the data they show."""
