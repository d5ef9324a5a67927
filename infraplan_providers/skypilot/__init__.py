"""The `skypilot` provider: fleets on any cloud through SkyPilot (`infraplan plugins install skypilot`).

`sky` is imported lazily, inside the functions that need it, so infraplan starts fast.
"""
