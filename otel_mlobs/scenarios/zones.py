"""Taxi zones of the synthetic scenario: a slice of the real TLC zone map.

The ids, names and boroughs are those of the NYC TLC taxi zone lookup, so the synthetic trips read
like the public Yellow Trip records. Coordinates are approximate zone centroids; they only feed
the trip-distance model (great-circle distance times a street-grid detour factor), so a few
hundred metres of error do not matter.

``weight`` is a zone's relative share of daytime pickups; ``nightlife`` zones gain pickups late in
the evening, which gives the hour-of-day a neighbourhood signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np


@dataclass(frozen=True, slots=True)
class Zone:
    """One TLC taxi zone."""

    location_id: int
    name: str
    borough: str
    lat: float
    lon: float
    weight: float
    nightlife: bool = False


ZONES: tuple[Zone, ...] = (
    Zone(230, "Times Sq/Theatre District", "Manhattan", 40.7590, -73.9845, 9.0, True),
    Zone(161, "Midtown Center", "Manhattan", 40.7580, -73.9780, 9.0),
    Zone(162, "Midtown East", "Manhattan", 40.7560, -73.9720, 7.0),
    Zone(163, "Midtown North", "Manhattan", 40.7640, -73.9790, 6.0),
    Zone(164, "Midtown South", "Manhattan", 40.7490, -73.9850, 6.0),
    Zone(170, "Murray Hill", "Manhattan", 40.7480, -73.9780, 5.0),
    Zone(186, "Penn Station/Madison Sq West", "Manhattan", 40.7500, -73.9930, 6.0),
    Zone(100, "Garment District", "Manhattan", 40.7540, -73.9900, 4.0),
    Zone(234, "Union Sq", "Manhattan", 40.7360, -73.9900, 5.0, True),
    Zone(107, "Gramercy", "Manhattan", 40.7370, -73.9830, 4.0),
    Zone(90, "Flatiron", "Manhattan", 40.7410, -73.9900, 4.0),
    Zone(79, "East Village", "Manhattan", 40.7270, -73.9840, 5.0, True),
    Zone(148, "Lower East Side", "Manhattan", 40.7160, -73.9860, 3.0, True),
    Zone(113, "Greenwich Village North", "Manhattan", 40.7330, -73.9970, 3.0, True),
    Zone(114, "Greenwich Village South", "Manhattan", 40.7290, -73.9990, 3.0, True),
    Zone(249, "West Village", "Manhattan", 40.7340, -74.0040, 4.0, True),
    Zone(158, "Meatpacking/West Village West", "Manhattan", 40.7400, -74.0070, 2.0, True),
    Zone(68, "East Chelsea", "Manhattan", 40.7440, -73.9990, 4.0),
    Zone(246, "West Chelsea/Hudson Yards", "Manhattan", 40.7510, -74.0040, 3.0),
    Zone(211, "SoHo", "Manhattan", 40.7230, -74.0020, 3.0),
    Zone(231, "TriBeCa/Civic Center", "Manhattan", 40.7160, -74.0080, 3.0),
    Zone(87, "Financial District North", "Manhattan", 40.7090, -74.0080, 3.0),
    Zone(45, "Chinatown", "Manhattan", 40.7160, -73.9970, 1.5),
    Zone(48, "Clinton East", "Manhattan", 40.7620, -73.9900, 4.0, True),
    Zone(142, "Lincoln Square East", "Manhattan", 40.7740, -73.9820, 4.0),
    Zone(239, "Upper West Side South", "Manhattan", 40.7830, -73.9770, 4.0),
    Zone(238, "Upper West Side North", "Manhattan", 40.7930, -73.9700, 3.0),
    Zone(237, "Upper East Side South", "Manhattan", 40.7670, -73.9610, 7.0),
    Zone(236, "Upper East Side North", "Manhattan", 40.7780, -73.9530, 6.0),
    Zone(141, "Lenox Hill West", "Manhattan", 40.7670, -73.9660, 4.0),
    Zone(229, "Sutton Place/Turtle Bay North", "Manhattan", 40.7570, -73.9650, 3.0),
    Zone(41, "Central Harlem", "Manhattan", 40.8080, -73.9460, 1.0),
    Zone(132, "JFK Airport", "Queens", 40.6410, -73.7780, 4.0),
    Zone(138, "LaGuardia Airport", "Queens", 40.7770, -73.8740, 3.5),
    Zone(7, "Astoria", "Queens", 40.7640, -73.9230, 0.6),
    Zone(145, "Long Island City/Hunters Point", "Queens", 40.7440, -73.9550, 0.5),
    Zone(255, "Williamsburg (North Side)", "Brooklyn", 40.7170, -73.9580, 0.8, True),
    Zone(256, "Williamsburg (South Side)", "Brooklyn", 40.7080, -73.9580, 0.5, True),
    Zone(65, "Downtown Brooklyn/MetroTech", "Brooklyn", 40.6930, -73.9870, 0.6),
    Zone(181, "Park Slope", "Brooklyn", 40.6710, -73.9780, 0.5),
)

AIRPORT_IDS: frozenset[int] = frozenset({132, 138})
JFK_ID = 132
_DETOUR = 1.3  # street-grid travel distance over great-circle distance
_MILES_PER_DEG_LAT = 69.0


@dataclass(frozen=True)
class ZoneTable:
    """Column arrays over :data:`ZONES`, indexed by zone position (not LocationID)."""

    ids: np.ndarray
    names: np.ndarray
    boroughs: np.ndarray
    weight_day: np.ndarray
    weight_night: np.ndarray
    is_airport: np.ndarray
    is_manhattan: np.ndarray
    distance: np.ndarray  # (n, n) typical travel miles between zone centroids

    def index_of(self, name: str) -> int:
        """Position of a zone by exact TLC name; raises with the valid names on a miss."""
        hits = np.flatnonzero(self.names == name)
        if not len(hits):
            raise ValueError(f"unknown zone {name!r}; valid zones: {', '.join(self.names)}")
        return int(hits[0])


@cache
def zone_table() -> ZoneTable:
    """The zone arrays, built once; cached because every simulated day samples from them."""
    lat = np.array([z.lat for z in ZONES])
    lon = np.array([z.lon for z in ZONES])
    dy = (lat[:, None] - lat[None, :]) * _MILES_PER_DEG_LAT
    dx = (lon[:, None] - lon[None, :]) * _MILES_PER_DEG_LAT * np.cos(np.radians(40.75))
    distance = np.hypot(dx, dy) * _DETOUR
    # A ride inside one zone still covers some ground.
    np.fill_diagonal(distance, 0.7)
    weight = np.array([z.weight for z in ZONES])
    nightlife = np.array([z.nightlife for z in ZONES])
    return ZoneTable(
        ids=np.array([z.location_id for z in ZONES], dtype=np.int64),
        names=np.array([z.name for z in ZONES]),
        boroughs=np.array([z.borough for z in ZONES]),
        weight_day=weight / weight.sum(),
        weight_night=(w := weight * np.where(nightlife, 2.5, 1.0)) / w.sum(),
        is_airport=np.array([z.location_id in AIRPORT_IDS for z in ZONES]),
        is_manhattan=np.array([z.borough == "Manhattan" for z in ZONES]),
        distance=distance,
    )
