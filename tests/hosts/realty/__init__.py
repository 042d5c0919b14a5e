"""A real estate site whose schema is not pfsync's default: the column map plugs pfsync in.

Modelled on public Django real estate sites: a custom user model with its own
NOT NULL flags; listings whose owner is NOT NULL, whose location is a text
column (no areas table), whose price is a whole number and whose title holds
100 characters, with a main image column; an images table holding only the
file and a thumbnail. ``settings.PFSYNC_HOST`` is the map README.md shows.
"""
