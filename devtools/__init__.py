"""Local-run and test tooling (not part of the production package): embedded services and demo data."""
