"""Feature extractors shared by model families: each returns a list of feature maps, finest first."""
