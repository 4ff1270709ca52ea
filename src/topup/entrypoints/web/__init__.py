"""The web pages of the four channels (the portal first), server-rendered on one shared layer."""
