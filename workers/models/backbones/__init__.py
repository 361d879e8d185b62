"""Feature extractors for the model families: each returns a list of feature maps, finest first."""
