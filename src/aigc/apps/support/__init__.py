"""Customer service: support sites (sites.py) and the desk where visitors talk to the assistant
and, when they ask for one or it finds no source, to a person (desk.py)."""
