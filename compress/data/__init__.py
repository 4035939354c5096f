"""Data: JPEG degradation, image loading, dataset registry, downloads, training patches."""
