"""Framework-free checkpoint handling: unwrapping, filtering and strict layout matching."""

from .state import MatchReport, match_layout, unwrap

__all__ = ["MatchReport", "match_layout", "unwrap"]
