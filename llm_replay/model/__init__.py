"""Value types: interaction, canonical request and fingerprint, field diffs, scrubbing rules, run records."""
