"""Events stage: per-camera tracking, event rules and zones, the event store, and the live feed."""
