"""Storage: database models, migrations, blob store and data functions (public API: docs/storage.md).

One module per concern: db (engines, sessions, migrations), blobs, images, captions, corrections, events,
channels (auto-caption switch, opt-out), registry (model versions), runs, feedback (export), forget.
Functions take the caller's session and return frozen dataclasses; errors are `storage.errors` UserErrors.
"""
