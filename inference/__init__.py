"""Image captioning: image intake, the model engine and the `Captioner` interface."""
