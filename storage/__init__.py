"""Storage: database models, migrations, blob store and data functions."""
