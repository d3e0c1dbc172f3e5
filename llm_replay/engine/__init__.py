"""The decision for one request: modes and settings, matching rules, the recorder, miss explanations, the clock."""
