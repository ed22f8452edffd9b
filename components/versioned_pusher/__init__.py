"""Pusher that writes increasing integer versions atomically."""

from components.versioned_pusher.component import VersionedPusher

__all__ = ["VersionedPusher"]
