"""Drivers: programs that move analyses into the store. They talk to the service only through the client."""
