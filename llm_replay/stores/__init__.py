"""Where recordings live: in memory, SQLite; and the vcrpy YAML interchange."""
